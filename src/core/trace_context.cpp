// Reading and checking the trace context of an event document.
#include "core/trace_context.hpp"

#include <rapidjson/document.h>

namespace pgrelay {
namespace {

bool lower_hex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool all_zero(std::string_view s) { return s.find_first_not_of('0') == std::string_view::npos; }

bool printable(char c) { return c >= 0x21 && c <= 0x7e; }

// One list member: key=value (W3C tracestate keys and values, without the key's length split
// of the multi-tenant form, as in SQL).
bool valid_member(std::string_view m) {
  const size_t eq = m.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq > 256) return false;
  const std::string_view key = m.substr(0, eq), value = m.substr(eq + 1);
  for (size_t i = 0; i < key.size(); ++i) {
    const char c = key[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!(alnum || (i > 0 && (c == '_' || c == '-' || c == '*' || c == '/' || c == '@')))) return false;
  }
  if (value.empty() || value.size() > 256 || !printable(value.front()) || !printable(value.back())) return false;
  for (char c : value) {
    if (c == ',' || c == '=' || !(c == ' ' || printable(c))) return false;
  }
  return true;
}

}  // namespace

bool valid_traceparent(std::string_view v) {
  if (v.size() < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-') return false;
  const std::string_view version = v.substr(0, 2), trace = v.substr(3, 32), parent = v.substr(36, 16),
                         flags = v.substr(53, 2);
  if (!lower_hex(version) || !lower_hex(trace) || !lower_hex(parent) || !lower_hex(flags)) return false;
  if (version == "ff" || all_zero(trace) || all_zero(parent)) return false;
  if (v.size() == 55) return true;
  if (version == "00" || v[55] != '-') return false;  // only a later version may append more
  for (char c : v.substr(56)) {
    if (!printable(c)) return false;
  }
  return true;
}

bool valid_tracestate(std::string_view v) {
  if (v.size() > 512) return false;
  int members = 0;
  size_t start = 0;
  for (;;) {
    const size_t comma = v.find(',', start);
    std::string_view m = v.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    while (!m.empty() && (m.front() == ' ' || m.front() == '\t')) m.remove_prefix(1);
    while (!m.empty() && (m.back() == ' ' || m.back() == '\t')) m.remove_suffix(1);
    if (!m.empty()) {
      if (!valid_member(m) || ++members > 32) return false;
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return members > 0;
}

TraceContext trace_context_of(const std::string& event_json) {
  TraceContext tc;
  if (event_json.find("\"traceparent\"") == std::string::npos) return tc;
  rapidjson::Document doc;
  doc.Parse(event_json.data(), event_json.size());
  if (doc.HasParseError() || !doc.IsObject()) return tc;
  const auto headers = doc.FindMember("headers");
  if (headers == doc.MemberEnd() || !headers->value.IsObject()) return tc;
  const auto tp = headers->value.FindMember("traceparent");
  if (tp == headers->value.MemberEnd() || !tp->value.IsString()) return tc;
  const std::string_view parent(tp->value.GetString(), tp->value.GetStringLength());
  if (!valid_traceparent(parent)) return tc;
  tc.traceparent = std::string(parent);
  const auto ts = headers->value.FindMember("tracestate");
  if (ts != headers->value.MemberEnd() && ts->value.IsString()) {
    const std::string_view state(ts->value.GetString(), ts->value.GetStringLength());
    if (valid_tracestate(state)) tc.tracestate = std::string(state);
  }
  return tc;
}

}  // namespace pgrelay
