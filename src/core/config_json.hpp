// Reading a config's JSON document: typed readers that fail with the key path
// ("config: relay.lease_ms must be an integer, not a string"). Internal to the
// config parser (config.cpp, config_handler.cpp); pure functions.
#pragma once
#include <rapidjson/document.h>

#include "pgrelay/payload.hpp"  // json_kind, used with these helpers

#include <cstdint>
#include <regex>
#include <string>
#include <vector>

#include "core/config.hpp"

namespace pgrelay::config_json {

using Value = rapidjson::Value;

// Throws ConfigError("config: <path> <what>").
[[noreturn]] void fail(const std::string& path, const std::string& what);

std::string join(const std::vector<std::string>& v);

// "line 3, column 14" of byte `offset` in `text` (columns count characters).
std::string text_position(const std::string& text, size_t offset);

// JSON allows a key twice in one object and RapidJSON keeps both; which one a
// lookup sees is an accident, so a repeated key is an error wherever it is.
void reject_duplicate_keys(const Value& root);

// Rejects keys of `obj` not in `known`, naming the known ones.
void check_keys(const Value& obj, const std::string& path, const std::vector<std::string>& known);

const Value& need_object(const Value& v, const std::string& path);
std::string need_string(const Value& v, const std::string& path, size_t max_len = 4096);
int64_t need_int(const Value& v, const std::string& path, int64_t lo, int64_t hi);
double need_fraction(const Value& v, const std::string& path);
std::string need_choice(const Value& v, const std::string& path, const std::vector<std::string>& choices);
std::vector<std::string> need_string_array(const Value& v, const std::string& path, bool allow_empty);

// Calls fn(key, value, path) for each member of the optional object `name` of `parent`.
template <typename Fn>
void each(const Value& parent, const char* name, const std::string& path, const std::vector<std::string>& known,
          Fn fn) {
  auto it = parent.FindMember(name);
  if (it == parent.MemberEnd()) return;
  const Value& obj = need_object(it->value, path);
  check_keys(obj, path, known);
  for (auto m = obj.MemberBegin(); m != obj.MemberEnd(); ++m) {
    fn(std::string(m->name.GetString()), m->value, path + "." + m->name.GetString());
  }
}

// Handler names and event types: what the db_events_type_valid constraint allows.
const std::regex& name_pattern();

}  // namespace pgrelay::config_json
