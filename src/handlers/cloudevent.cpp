// Building CloudEvents from event documents without re-encoding their payloads.
#include "handlers/cloudevent.hpp"

#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "core/trace_context.hpp"

namespace pgrelay {
namespace {

// What a CloudEvent takes from an event document: the payload's text exactly as the
// database wrote it (re-encoding would round big numbers) and created_at.
struct DocumentParts : rapidjson::BaseReaderHandler<rapidjson::UTF8<>, DocumentParts> {
  explicit DocumentParts(const rapidjson::StringStream& s) : stream(s) {}
  const rapidjson::StringStream& stream;
  int depth = 0;
  std::string member;  // the last member name seen at depth 1
  size_t payload_begin = 0, payload_end = 0;
  std::string created_at;
  bool has_created_at = false;

  bool Key(const char* s, rapidjson::SizeType n, bool) {
    if (depth == 1) member.assign(s, n);
    return true;
  }
  bool String(const char* s, rapidjson::SizeType n, bool) {
    if (depth == 1 && member == "created_at") {
      created_at.assign(s, n);
      has_created_at = true;
    }
    return true;
  }
  bool StartObject() {
    if (depth == 1 && member == "payload") payload_begin = stream.Tell() - 1;  // '{' was just read
    ++depth;
    return true;
  }
  bool EndObject(rapidjson::SizeType) {
    --depth;
    if (depth == 1 && member == "payload") payload_end = stream.Tell();  // '}' was just read
    return true;
  }
  bool StartArray() {
    ++depth;
    return true;
  }
  bool EndArray(rapidjson::SizeType) {
    --depth;
    return true;
  }
  bool Default() { return true; }
};

void add_string(rapidjson::Writer<rapidjson::StringBuffer>& w, const char* name, const std::string& value) {
  w.Key(name);
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

}  // namespace

std::optional<CloudEventsMode> cloudevents_mode(const std::string& name) {
  if (name.empty()) return CloudEventsMode::none;
  if (name == "binary") return CloudEventsMode::binary;
  if (name == "structured") return CloudEventsMode::structured;
  return std::nullopt;
}

std::string percent_encoded(std::string_view v) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  out.reserve(v.size());
  for (unsigned char c : v) {
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '%') {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string default_cloudevents_source(const std::string& database) {
  std::string name;
  for (unsigned char c : database) {
    // RFC 3986 unreserved characters stay; everything else in a path segment is encoded.
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                            c == '.' || c == '_' || c == '~';
    if (unreserved) {
      name += static_cast<char>(c);
    } else {
      static const char* hex = "0123456789ABCDEF";
      name += '%';
      name += hex[c >> 4];
      name += hex[c & 0xf];
    }
  }
  return "/pgrelay/" + name;
}

std::optional<CloudEventMessage> to_cloudevent(CloudEventsMode mode, const Event& event, const std::string& id,
                                               const std::string& source, std::string* why) {
  rapidjson::StringStream stream(event.json.c_str());
  DocumentParts parts(stream);
  rapidjson::Reader reader;
  if (reader.Parse(stream, parts).IsError() || parts.payload_end <= parts.payload_begin || !parts.has_created_at) {
    *why = "cloudevents: the event document has no payload object or created_at";
    return std::nullopt;
  }
  const std::string_view payload(event.json.data() + parts.payload_begin, parts.payload_end - parts.payload_begin);
  const TraceContext trace = trace_context_of(event.json);
  CloudEventMessage m;
  if (mode == CloudEventsMode::binary) {
    m.headers = {{"ce-specversion", "1.0"},
                 {"ce-id", percent_encoded(id)},
                 {"ce-source", percent_encoded(source)},
                 {"ce-type", percent_encoded(event.type)},
                 {"ce-time", percent_encoded(parts.created_at)},
                 {"content-type", "application/json"}};
    if (event.key) m.headers.emplace_back("ce-subject", percent_encoded(*event.key));
    m.body.assign(payload);
    return m;
  }
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  add_string(w, "specversion", "1.0");
  add_string(w, "id", id);
  add_string(w, "source", source);
  add_string(w, "type", event.type);
  if (event.key) add_string(w, "subject", *event.key);
  add_string(w, "time", parts.created_at);
  add_string(w, "datacontenttype", "application/json");
  if (!trace.empty()) add_string(w, "traceparent", trace.traceparent);
  if (!trace.tracestate.empty()) add_string(w, "tracestate", trace.tracestate);
  w.Key("data");
  w.RawValue(payload.data(), payload.size(), rapidjson::kObjectType);
  w.EndObject();
  m.headers = {{"content-type", "application/cloudevents+json; charset=utf-8"}};
  m.body.assign(buf.GetString(), buf.GetSize());
  return m;
}

}  // namespace pgrelay
