// Which environment variables override which config keys, and how they are
// written into the document (core/config_env.hpp).
#include "core/config_env.hpp"

#include <cerrno>
#include <cstdlib>

namespace pgrelay {

using rapidjson::Value;

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
}

void apply_env_overrides(rapidjson::Document& doc, const EnvLookup& env,
                         std::vector<std::pair<std::string, std::string>>* origin) {
  struct Override {
    const char* var;
    const char* section;
    const char* key;
    bool integer;
  };
  static const Override overrides[] = {
      {"DATABASE_URL", "database", "url", false},
      {"PGRELAY_DATABASE_URL", "database", "url", false},
      {"PGRELAY_LISTEN_DATABASE_URL", "database", "listen_url", false},
      {"PGRELAY_RELAY_ID", "relay", "id", false},
      {"PGRELAY_BATCH_SIZE", "relay", "batch_size", true},
      {"PGRELAY_MAX_IN_FLIGHT", "relay", "max_in_flight", true},
      {"PGRELAY_LEASE_MS", "relay", "lease_ms", true},
      {"PGRELAY_POLL_INTERVAL_MS", "relay", "poll_interval_ms", true},
      {"PGRELAY_POLL_MAX_MS", "relay", "poll_max_ms", true},
      {"PGRELAY_WAKE", "relay", "wake", false},
      {"PGRELAY_CAPTURE", "relay", "capture", false},
      {"PGRELAY_CLAIM", "relay", "claim", false},
      {"PGRELAY_DONE_RETENTION_S", "relay", "done_retention_s", true},
      {"PGRELAY_LOG_LEVEL", "log", "level", false},
      {"PGRELAY_LOG_FORMAT", "log", "format", false},
      {"PGRELAY_ADMIN_LISTEN", "admin", "listen", false},
  };
  auto& a = doc.GetAllocator();
  for (const Override& o : overrides) {
    auto value = env(o.var);
    if (!value) continue;
    const std::string path = std::string(o.section) + "." + o.key;
    if (!doc.HasMember(o.section)) doc.AddMember(Value(o.section, a), Value(rapidjson::kObjectType), a);
    Value& sec = doc[o.section];
    if (!sec.IsObject()) continue;  // the file's own error is reported by validation
    Value v;
    if (o.integer) {
      char* end = nullptr;
      errno = 0;
      const long long n = std::strtoll(value->c_str(), &end, 10);
      if (value->empty() || *end != '\0' || errno != 0) {
        throw ConfigError(std::string("config: ") + o.var + " must be an integer (got \"" + *value + "\")");
      }
      v.SetInt64(n);
    } else {
      v.SetString(value->c_str(), static_cast<rapidjson::SizeType>(value->size()), a);
    }
    if (sec.HasMember(o.key)) sec[o.key] = v;
    else sec.AddMember(Value(o.key, a), v, a);
    origin->emplace_back(path, o.var);
  }
}

}  // namespace pgrelay
