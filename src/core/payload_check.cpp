// Required fields and their JSON types, checked before any handler runs.
#include "core/payload_check.hpp"

#include <rapidjson/document.h>

#include "pgrelay/payload.hpp"  // json_kind

namespace pgrelay {
namespace {

// A declaration tells integers from other numbers ("integer" is one of its kinds),
// so its messages do too; every other kind is named as everywhere (json_kind).
const char* kind(const rapidjson::Value& v) {
  if (v.IsInt64() || v.IsUint64()) return "an integer";
  return json_kind(v);
}

bool fits(const rapidjson::Value& v, const std::string& want) {
  if (want == "string") return v.IsString();
  if (want == "number") return v.IsNumber();
  if (want == "integer") return v.IsInt64() || v.IsUint64();
  if (want == "boolean") return v.IsBool();
  if (want == "object") return v.IsObject();
  if (want == "array") return v.IsArray();
  return false;
}

}  // namespace

std::optional<std::string> check_payload(const EventTypeDecl& decl, const std::string& event_json) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(event_json.c_str(), event_json.size());
  if (doc.HasParseError() || !doc.IsObject()) return std::string("event document is not valid JSON");
  auto p = doc.FindMember("payload");
  if (p == doc.MemberEnd() || !p->value.IsObject()) return std::string("payload is not a JSON object");
  for (const auto& [field, want] : decl.required) {
    auto f = p->value.FindMember(field.c_str());
    if (f == p->value.MemberEnd()) return "field \"" + field + "\" is missing";
    if (!fits(f->value, want)) {
      const char* article = (want == "integer" || want == "object" || want == "array") ? "an " : "a ";
      return "field \"" + field + "\" must be " + article + want + ", got " + kind(f->value);
    }
  }
  return std::nullopt;
}

}  // namespace pgrelay
