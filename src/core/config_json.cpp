// Typed readers of the config document; every error names the key path.
#include "core/config_json.hpp"

#include <algorithm>
#include <set>

namespace pgrelay::config_json {

void fail(const std::string& path, const std::string& what) { throw ConfigError("config: " + path + " " + what); }

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

std::string text_position(const std::string& text, size_t offset) {
  offset = std::min(offset, text.size());
  size_t line = 1, column = 1;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {  // not a UTF-8 continuation byte
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

// Walks with an explicit stack: a config may nest deeper than the call stack.
void reject_duplicate_keys(const Value& root) {
  std::vector<std::pair<const Value*, std::string>> todo{{&root, ""}};
  while (!todo.empty()) {
    auto [v, path] = std::move(todo.back());
    todo.pop_back();
    if (v->IsArray()) {
      for (rapidjson::SizeType i = 0; i < v->Size(); ++i)
        todo.emplace_back(&(*v)[i], path + "[" + std::to_string(i) + "]");
      continue;
    }
    if (!v->IsObject()) continue;
    std::set<std::string> seen;
    for (auto m = v->MemberBegin(); m != v->MemberEnd(); ++m) {
      std::string key(m->name.GetString(), m->name.GetStringLength());
      std::string at = path.empty() ? key : path + "." + key;
      if (!seen.insert(std::move(key)).second) fail(at, "appears twice in the same object");
      todo.emplace_back(&m->value, std::move(at));
    }
  }
}

void check_keys(const Value& obj, const std::string& path, const std::vector<std::string>& known) {
  for (auto it = obj.MemberBegin(); it != obj.MemberEnd(); ++it) {
    const std::string k = it->name.GetString();
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      fail(path.empty() ? k : path + "." + k, "is not a known key (known: " + join(known) + ")");
    }
  }
}

const Value& need_object(const Value& v, const std::string& path) {
  if (!v.IsObject()) fail(path, std::string("must be an object, not ") + json_kind(v));
  return v;
}

std::string need_string(const Value& v, const std::string& path, size_t max_len) {
  if (!v.IsString()) fail(path, std::string("must be a string, not ") + json_kind(v));
  if (v.GetStringLength() > max_len) fail(path, "is longer than " + std::to_string(max_len) + " characters");
  std::string s(v.GetString(), v.GetStringLength());
  // "\u0000" is valid JSON, but C strings and PostgreSQL text end there.
  if (s.find('\0') != std::string::npos) fail(path, "contains a NUL byte (\\u0000), which no name or value may hold");
  return s;
}

int64_t need_int(const Value& v, const std::string& path, int64_t lo, int64_t hi) {
  if (!v.IsInt64()) fail(path, std::string("must be an integer, not ") + json_kind(v));
  const int64_t n = v.GetInt64();
  if (n < lo || n > hi) {
    fail(path,
         "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + " (got " + std::to_string(n) + ")");
  }
  return n;
}

double need_fraction(const Value& v, const std::string& path) {
  if (!v.IsNumber()) fail(path, std::string("must be a number, not ") + json_kind(v));
  const double d = v.GetDouble();
  if (!(d >= 0.0 && d <= 1.0)) fail(path, "must be between 0 and 1");
  return d;
}

std::string need_choice(const Value& v, const std::string& path, const std::vector<std::string>& choices) {
  std::string s = need_string(v, path);
  if (std::find(choices.begin(), choices.end(), s) == choices.end()) {
    fail(path, "must be one of " + join(choices) + " (got \"" + s + "\")");
  }
  return s;
}

std::vector<std::string> need_string_array(const Value& v, const std::string& path, bool allow_empty) {
  if (!v.IsArray()) fail(path, std::string("must be an array of strings, not ") + json_kind(v));
  if (!allow_empty && v.Empty()) fail(path, "must not be empty");
  std::vector<std::string> out;
  for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
    out.push_back(need_string(v[i], path + "[" + std::to_string(i) + "]"));
  }
  return out;
}

const std::regex& name_pattern() {
  static const std::regex re("^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$");
  return re;
}

}  // namespace pgrelay::config_json
