// Config parsing and validation: every error names the key path and what is wrong.
#include "core/config.hpp"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <algorithm>
#include <cstdlib>
#include <regex>
#include <set>

namespace pgrelay {
namespace {

using Value = rapidjson::Value;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw ConfigError("config: " + path + " " + what);
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

const char* type_name(const Value& v) {
  if (v.IsNull()) return "null";
  if (v.IsBool()) return "a boolean";
  if (v.IsNumber()) return "a number";
  if (v.IsString()) return "a string";
  if (v.IsArray()) return "an array";
  return "an object";
}

// Rejects keys of `obj` not in `known`, naming the closest thing: the list.
void check_keys(const Value& obj, const std::string& path, const std::vector<std::string>& known) {
  for (auto it = obj.MemberBegin(); it != obj.MemberEnd(); ++it) {
    const std::string k = it->name.GetString();
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      fail(path.empty() ? k : path + "." + k, "is not a known key (known: " + join(known) + ")");
    }
  }
}

const Value& need_object(const Value& v, const std::string& path) {
  if (!v.IsObject()) fail(path, std::string("must be an object, not ") + type_name(v));
  return v;
}

std::string need_string(const Value& v, const std::string& path, size_t max_len = 4096) {
  if (!v.IsString()) fail(path, std::string("must be a string, not ") + type_name(v));
  if (v.GetStringLength() > max_len) fail(path, "is longer than " + std::to_string(max_len) + " characters");
  return std::string(v.GetString(), v.GetStringLength());
}

int64_t need_int(const Value& v, const std::string& path, int64_t lo, int64_t hi) {
  if (!v.IsInt64()) fail(path, std::string("must be an integer, not ") + type_name(v));
  const int64_t n = v.GetInt64();
  if (n < lo || n > hi) {
    fail(path, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + " (got " +
                   std::to_string(n) + ")");
  }
  return n;
}

double need_fraction(const Value& v, const std::string& path) {
  if (!v.IsNumber()) fail(path, std::string("must be a number, not ") + type_name(v));
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
  if (!v.IsArray()) fail(path, std::string("must be an array of strings, not ") + type_name(v));
  if (!allow_empty && v.Empty()) fail(path, "must not be empty");
  std::vector<std::string> out;
  for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
    out.push_back(need_string(v[i], path + "[" + std::to_string(i) + "]"));
  }
  return out;
}

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

const std::regex& name_pattern() {
  static const std::regex re("^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$");
  return re;
}

RetryPolicy parse_retry(const Value& v, const std::string& path) {
  RetryPolicy p;
  need_object(v, path);
  check_keys(v, path, {"max_attempts", "base_ms", "cap_ms", "jitter"});
  for (auto m = v.MemberBegin(); m != v.MemberEnd(); ++m) {
    const std::string k = m->name.GetString();
    const std::string kp = path + "." + k;
    if (k == "max_attempts") p.max_attempts = static_cast<int>(need_int(m->value, kp, 1, 1000));
    else if (k == "base_ms") p.base_ms = need_int(m->value, kp, 0, 86400000);
    else if (k == "cap_ms") p.cap_ms = need_int(m->value, kp, 0, 7 * 86400000LL);
    else if (k == "jitter") p.jitter = need_fraction(m->value, kp);
  }
  if (p.cap_ms < p.base_ms) fail(path + ".cap_ms", "must not be below base_ms");
  return p;
}

HandlerConfig parse_handler(const std::string& name, const Value& v, const std::string& path) {
  HandlerConfig h;
  h.name = name;
  if (!std::regex_match(name, name_pattern())) fail(path, "is not a valid handler name (letters, digits, _ . : -)");
  need_object(v, path);
  auto t = v.FindMember("type");
  if (t == v.MemberEnd()) fail(path + ".type", "is missing (one of stdout, command)");
  h.type = need_choice(t->value, path + ".type", {"stdout", "command"});
  std::vector<std::string> known = {"type", "retry", "timeout_ms", "concurrency"};
  if (h.type == "command") known.push_back("command");
  check_keys(v, path, known);
  for (auto m = v.MemberBegin(); m != v.MemberEnd(); ++m) {
    const std::string k = m->name.GetString();
    const std::string kp = path + "." + k;
    if (k == "retry") h.retry = parse_retry(m->value, kp);
    else if (k == "timeout_ms") h.timeout_ms = need_int(m->value, kp, 1, 86400000);
    else if (k == "concurrency") h.concurrency = static_cast<int>(need_int(m->value, kp, 1, 4096));
    else if (k == "command") h.argv = need_string_array(m->value, kp, false);
  }
  if (h.type == "command" && h.argv.empty()) fail(path + ".command", "is missing (the program and its arguments)");
  return h;
}

// Writes environment overrides into the document before validation, so they are
// checked by the same rules as the file.
void apply_env(rapidjson::Document& doc, const EnvLookup& env, std::vector<std::pair<std::string, std::string>>* origin) {
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
      {"PGRELAY_WAKE", "relay", "wake", false},
      {"PGRELAY_DONE_RETENTION_S", "relay", "done_retention_s", true},
      {"PGRELAY_LOG_LEVEL", "log", "level", false},
      {"PGRELAY_LOG_FORMAT", "log", "format", false},
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

}  // namespace

const HandlerConfig* Config::handler(const std::string& name) const {
  for (const auto& h : handlers) {
    if (h.name == name) return &h;
  }
  return nullptr;
}

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
}

Config parse_config(const std::string& json_text, const EnvLookup& env) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseCommentsFlag | rapidjson::kParseTrailingCommasFlag>(json_text.c_str(),
                                                                                   json_text.size());
  if (doc.HasParseError()) {
    throw ConfigError(std::string("config: invalid JSON at offset ") + std::to_string(doc.GetErrorOffset()) + ": " +
                      rapidjson::GetParseError_En(doc.GetParseError()));
  }
  if (!doc.IsObject()) throw ConfigError(std::string("config: the document must be an object, not ") + type_name(doc));
  std::vector<std::pair<std::string, std::string>> env_origin;
  apply_env(doc, env, &env_origin);

  try {
    Config c;
    check_keys(doc, "", {"database", "relay", "log", "handlers", "routes"});
    each(doc, "database", "database", {"url", "listen_url"}, [&](const std::string& k, const Value& v, const std::string& p) {
      if (k == "url") c.database.url = need_string(v, p);
      else c.database.listen_url = need_string(v, p);
    });
    each(doc, "relay", "relay",
         {"id", "batch_size", "max_in_flight", "lease_ms", "poll_interval_ms", "wake", "done_retention_s",
          "shutdown_timeout_ms", "ack_delay_ms"},
         [&](const std::string& k, const Value& v, const std::string& p) {
           RelayOptions& r = c.relay;
           if (k == "id") r.id = need_string(v, p, 200);
           else if (k == "batch_size") r.batch_size = static_cast<int>(need_int(v, p, 1, 10000));
           else if (k == "max_in_flight") r.max_in_flight = static_cast<int>(need_int(v, p, 1, 100000));
           else if (k == "lease_ms") r.lease_ms = need_int(v, p, 1000, 86400000);
           else if (k == "poll_interval_ms") r.poll_interval_ms = need_int(v, p, 10, 3600000);
           else if (k == "wake") r.wake = need_choice(v, p, {"notify", "poll", "wal"});
           else if (k == "done_retention_s") r.done_retention_s = need_int(v, p, 0, 366LL * 86400);
           else if (k == "shutdown_timeout_ms") r.shutdown_timeout_ms = need_int(v, p, 0, 3600000);
           else if (k == "ack_delay_ms") r.ack_delay_ms = need_int(v, p, 0, 1000);
         });
    each(doc, "log", "log", {"level", "format"}, [&](const std::string& k, const Value& v, const std::string& p) {
      if (k == "level") c.log.level = need_choice(v, p, {"debug", "info", "warn", "error"});
      else c.log.format = need_choice(v, p, {"auto", "json", "text"});
    });
    if (auto it = doc.FindMember("handlers"); it != doc.MemberEnd()) {
      const Value& hs = need_object(it->value, "handlers");
      for (auto m = hs.MemberBegin(); m != hs.MemberEnd(); ++m) {
        c.handlers.push_back(parse_handler(m->name.GetString(), m->value, std::string("handlers.") + m->name.GetString()));
      }
    }
    std::vector<std::string> names;
    for (const auto& h : c.handlers) names.push_back(h.name);
    if (auto it = doc.FindMember("routes"); it != doc.MemberEnd()) {
      if (!it->value.IsArray()) fail("routes", std::string("must be an array, not ") + type_name(it->value));
      for (rapidjson::SizeType i = 0; i < it->value.Size(); ++i) {
        const std::string p = "routes[" + std::to_string(i) + "]";
        const Value& r = need_object(it->value[i], p);
        check_keys(r, p, {"match", "handlers"});
        Route route;
        auto m = r.FindMember("match");
        if (m == r.MemberEnd()) fail(p + ".match", "is missing (an event type, \"prefix.*\" or \"*\")");
        route.match = need_string(m->value, p + ".match", 200);
        const std::string& s = route.match;
        const bool wildcard = s == "*" || (s.size() > 2 && s.compare(s.size() - 2, 2, ".*") == 0);
        const std::string stem = wildcard && s != "*" ? s.substr(0, s.size() - 2) : s;
        if (s != "*" && !std::regex_match(stem, name_pattern())) {
          fail(p + ".match", "\"" + s + "\" is not an event type, \"prefix.*\" or \"*\"");
        }
        auto hs = r.FindMember("handlers");
        if (hs == r.MemberEnd()) fail(p + ".handlers", "is missing (names of handlers)");
        route.handlers = need_string_array(hs->value, p + ".handlers", false);
        for (size_t j = 0; j < route.handlers.size(); ++j) {
          if (!c.handler(route.handlers[j])) {
            fail(p + ".handlers[" + std::to_string(j) + "]",
                 "\"" + route.handlers[j] + "\" is not defined (known: " + (names.empty() ? "none" : join(names)) + ")");
          }
        }
        c.routes.push_back(std::move(route));
      }
    }
    for (const auto& h : c.handlers) {
      if (h.timeout_ms >= c.relay.lease_ms * 4) {
        // Heartbeats extend the lease, but a timeout far beyond it is almost always a mistake.
        fail("handlers." + h.name + ".timeout_ms", "must be below 4 x relay.lease_ms (" +
                                                     std::to_string(c.relay.lease_ms * 4) + ")");
      }
    }
    return c;
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    for (const auto& [path, var] : env_origin) {
      if (msg.find(path) != std::string::npos) {
        msg += " (set by " + var + ")";
        break;
      }
    }
    throw ConfigError(msg);
  }
}

Config default_config(const EnvLookup& env) { return parse_config("{}", env); }

}  // namespace pgrelay
