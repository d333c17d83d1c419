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

// JSON allows a key twice in one object and RapidJSON keeps both; which one a
// lookup sees is an accident, so a repeated key is an error wherever it is.
// Walks with an explicit stack: a config may nest deeper than the call stack.
void reject_duplicate_keys(const Value& root) {
  std::vector<std::pair<const Value*, std::string>> todo{{&root, ""}};
  while (!todo.empty()) {
    auto [v, path] = std::move(todo.back());
    todo.pop_back();
    if (v->IsArray()) {
      for (rapidjson::SizeType i = 0; i < v->Size(); ++i) todo.emplace_back(&(*v)[i], path + "[" + std::to_string(i) + "]");
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

// A secret given inline (`key`) or by the name of an environment variable (`key_env`).
std::string read_secret(const Value& obj, const std::string& path, const char* key, const EnvLookup& env) {
  const std::string env_key = std::string(key) + "_env";
  auto lit = obj.FindMember(key);
  auto var = obj.FindMember(env_key.c_str());
  if (lit != obj.MemberEnd() && var != obj.MemberEnd()) fail(path, std::string("sets both ") + key + " and " + env_key);
  if (lit != obj.MemberEnd()) {
    std::string s = need_string(lit->value, path + "." + key, 4096);
    if (s.empty()) fail(path + "." + key, "must not be empty");
    return s;
  }
  if (var != obj.MemberEnd()) {
    const std::string name = need_string(var->value, path + "." + env_key, 200);
    auto v = env(name);
    if (!v || v->empty()) fail(path + "." + env_key, "names " + name + ", which is not set in the environment");
    return *v;
  }
  return {};
}

CircuitBreakerOptions parse_breaker(const Value& v, const std::string& path) {
  CircuitBreakerOptions b;
  need_object(v, path);
  check_keys(v, path, {"failures", "cooldown_ms"});
  for (auto m = v.MemberBegin(); m != v.MemberEnd(); ++m) {
    const std::string k = m->name.GetString();
    if (k == "failures") b.failures = static_cast<int>(need_int(m->value, path + "." + k, 0, 1000000));
    else b.cooldown_ms = need_int(m->value, path + "." + k, 1, 86400000);
  }
  return b;
}

HandlerConfig parse_handler(const std::string& name, const Value& v, const std::string& path, const EnvLookup& env) {
  HandlerConfig h;
  h.name = name;
  if (!std::regex_match(name, name_pattern())) fail(path, "is not a valid handler name (letters, digits, _ . : -)");
  need_object(v, path);
  auto t = v.FindMember("type");
  if (t == v.MemberEnd()) fail(path + ".type", "is missing (one of stdout, command, webhook, sql, nats)");
  h.type = need_choice(t->value, path + ".type", {"stdout", "command", "webhook", "sql", "nats"});
  std::vector<std::string> known = {"type", "retry", "timeout_ms", "concurrency"};
  if (h.type == "command") known.push_back("command");
  if (h.type == "webhook") {
    for (const char* k : {"url", "headers", "secret", "secret_env", "connect_timeout_ms", "pool_size", "dead_statuses",
                          "circuit_breaker", "tls_verify", "ca_file"}) {
      known.push_back(k);
    }
  }
  if (h.type == "sql") known.push_back("function");
  if (h.type == "nats") {
    known.push_back("url");
    known.push_back("subject");
  }
  check_keys(v, path, known);
  for (auto m = v.MemberBegin(); m != v.MemberEnd(); ++m) {
    const std::string k = m->name.GetString();
    const std::string kp = path + "." + k;
    if (k == "retry") h.retry = parse_retry(m->value, kp);
    else if (k == "timeout_ms") h.timeout_ms = need_int(m->value, kp, 1, 86400000);
    else if (k == "concurrency") h.concurrency = static_cast<int>(need_int(m->value, kp, 1, 4096));
    else if (k == "command") h.argv = need_string_array(m->value, kp, false);
    else if (k == "url" && h.type == "webhook") {
      h.url = need_string(m->value, kp);
      if (h.url.rfind("http://", 0) != 0 && h.url.rfind("https://", 0) != 0) {
        fail(kp, "must start with http:// or https:// (got \"" + h.url + "\")");
      }
    } else if (k == "url") {
      h.nats_url = need_string(m->value, kp);
      if (h.nats_url.rfind("nats://", 0) != 0) fail(kp, "must start with nats:// (got \"" + h.nats_url + "\")");
    } else if (k == "headers") {
      const Value& hs = need_object(m->value, kp);
      for (auto hm = hs.MemberBegin(); hm != hs.MemberEnd(); ++hm) {
        const std::string hk = hm->name.GetString();
        const std::string hv = need_string(hm->value, kp + "." + hk, 8192);
        const bool bad_name = hk.empty() || hk.find_first_of(" :\r\n\t") != std::string::npos;
        if (bad_name || hv.find_first_of("\r\n") != std::string::npos) fail(kp + "." + hk, "is not a valid HTTP header");
        h.headers.emplace_back(hk, hv);
      }
    } else if (k == "connect_timeout_ms") h.connect_timeout_ms = need_int(m->value, kp, 1, 600000);
    else if (k == "pool_size") h.pool_size = static_cast<int>(need_int(m->value, kp, 1, 1024));
    else if (k == "dead_statuses") {
      if (!m->value.IsArray()) fail(kp, std::string("must be an array of HTTP statuses, not ") + type_name(m->value));
      h.dead_statuses.clear();
      for (rapidjson::SizeType i = 0; i < m->value.Size(); ++i) {
        h.dead_statuses.push_back(static_cast<int>(need_int(m->value[i], kp + "[" + std::to_string(i) + "]", 100, 599)));
      }
    } else if (k == "circuit_breaker") h.breaker = parse_breaker(m->value, kp);
    else if (k == "tls_verify") {
      if (!m->value.IsBool()) fail(kp, std::string("must be true or false, not ") + type_name(m->value));
      h.tls_verify = m->value.GetBool();
    } else if (k == "ca_file") h.ca_file = need_string(m->value, kp);
    else if (k == "function") {
      h.function = need_string(m->value, kp, 200);
      static const std::regex fn("^[A-Za-z_][A-Za-z0-9_$]*(\\.[A-Za-z_][A-Za-z0-9_$]*)?$");
      if (!std::regex_match(h.function, fn)) fail(kp, "must be a function name like schema.fn (got \"" + h.function + "\")");
    } else if (k == "subject") {
      h.subject = need_string(m->value, kp, 200);
      if (h.subject.empty() || h.subject.find_first_of(" \t\r\n") != std::string::npos) fail(kp, "is not a valid NATS subject");
    }
  }
  if (h.type == "webhook") h.secret = read_secret(v, path, "secret", env);
  if (h.type == "command" && h.argv.empty()) fail(path + ".command", "is missing (the program and its arguments)");
  if (h.type == "webhook" && h.url.empty()) fail(path + ".url", "is missing (the endpoint, http:// or https://)");
  if (h.type == "sql" && h.function.empty()) fail(path + ".function", "is missing (a function f(event jsonb))");
  return h;
}

EventTypeDecl parse_event_type(const std::string& type, const Value& v, const std::string& path) {
  EventTypeDecl d;
  d.type = type;
  if (!std::regex_match(type, name_pattern())) fail(path, "is not a valid event type");
  need_object(v, path);
  check_keys(v, path, {"required"});
  auto r = v.FindMember("required");
  if (r == v.MemberEnd()) return d;
  const Value& req = need_object(r->value, path + ".required");
  for (auto m = req.MemberBegin(); m != req.MemberEnd(); ++m) {
    d.required.emplace_back(m->name.GetString(),
                            need_choice(m->value, path + ".required." + m->name.GetString(),
                                        {"string", "number", "integer", "boolean", "object", "array"}));
  }
  return d;
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
      {"PGRELAY_POLL_MAX_MS", "relay", "poll_max_ms", true},
      {"PGRELAY_WAKE", "relay", "wake", false},
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
  constexpr unsigned kFlags = rapidjson::kParseCommentsFlag | rapidjson::kParseTrailingCommasFlag |
                              rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag;
  doc.Parse<kFlags>(json_text.c_str(), json_text.size());
  if (doc.HasParseError()) {
    throw ConfigError(std::string("config: invalid JSON at offset ") + std::to_string(doc.GetErrorOffset()) + ": " +
                      rapidjson::GetParseError_En(doc.GetParseError()));
  }
  if (!doc.IsObject()) throw ConfigError(std::string("config: the document must be an object, not ") + type_name(doc));
  reject_duplicate_keys(doc);
  std::vector<std::pair<std::string, std::string>> env_origin;
  apply_env(doc, env, &env_origin);

  try {
    Config c;
    check_keys(doc, "", {"database", "relay", "log", "admin", "handlers", "routes", "event_types"});
    each(doc, "database", "database", {"url", "listen_url"}, [&](const std::string& k, const Value& v, const std::string& p) {
      if (k == "url") c.database.url = need_string(v, p);
      else c.database.listen_url = need_string(v, p);
    });
    each(doc, "relay", "relay",
         {"id", "batch_size", "max_in_flight", "lease_ms", "poll_interval_ms", "poll_max_ms", "wake", "claim",
          "done_retention_s",
          "shutdown_timeout_ms", "ack_delay_ms"},
         [&](const std::string& k, const Value& v, const std::string& p) {
           RelayOptions& r = c.relay;
           if (k == "id") r.id = need_string(v, p, 200);
           else if (k == "batch_size") r.batch_size = static_cast<int>(need_int(v, p, 1, 10000));
           else if (k == "max_in_flight") r.max_in_flight = static_cast<int>(need_int(v, p, 1, 100000));
           else if (k == "lease_ms") r.lease_ms = need_int(v, p, 1000, 86400000);
           else if (k == "poll_interval_ms") r.poll_interval_ms = need_int(v, p, 10, 3600000);
           else if (k == "poll_max_ms") r.poll_max_ms = need_int(v, p, 1, 60000);
           else if (k == "wake") r.wake = need_choice(v, p, {"notify", "poll", "wal"});
           else if (k == "claim") r.claim = need_choice(v, p, {"lease", "transaction"});
           else if (k == "done_retention_s") r.done_retention_s = need_int(v, p, 0, 366LL * 86400);
           else if (k == "shutdown_timeout_ms") r.shutdown_timeout_ms = need_int(v, p, 0, 3600000);
           else if (k == "ack_delay_ms") r.ack_delay_ms = need_int(v, p, 0, 1000);
         });
    each(doc, "log", "log", {"level", "format"}, [&](const std::string& k, const Value& v, const std::string& p) {
      if (k == "level") c.log.level = need_choice(v, p, {"debug", "info", "warn", "error"});
      else c.log.format = need_choice(v, p, {"auto", "json", "text"});
    });
    if (auto it = doc.FindMember("admin"); it != doc.MemberEnd()) {
      const Value& a = need_object(it->value, "admin");
      check_keys(a, "admin", {"listen", "token", "token_env", "ready_max_backlog", "ready_max_oldest_pending_s"});
      for (auto m = a.MemberBegin(); m != a.MemberEnd(); ++m) {
        const std::string k = m->name.GetString();
        const std::string p = "admin." + k;
        if (k == "listen") {
          c.admin.listen = need_string(m->value, p, 200);
          const auto colon = c.admin.listen.rfind(':');
          if (colon == std::string::npos || colon == 0 ||
              c.admin.listen.find_first_not_of("0123456789", colon + 1) != std::string::npos ||
              colon + 1 == c.admin.listen.size()) {
            fail(p, "must be host:port (got \"" + c.admin.listen + "\")");
          }
        } else if (k == "ready_max_backlog") c.admin.ready_max_backlog = need_int(m->value, p, 1, 1000000000000LL);
        else if (k == "ready_max_oldest_pending_s") c.admin.ready_max_oldest_pending_s = need_int(m->value, p, 1, 365LL * 86400);
      }
      c.admin.token = read_secret(a, "admin", "token", env);
    }
    if (auto it = doc.FindMember("handlers"); it != doc.MemberEnd()) {
      const Value& hs = need_object(it->value, "handlers");
      for (auto m = hs.MemberBegin(); m != hs.MemberEnd(); ++m) {
        c.handlers.push_back(
            parse_handler(m->name.GetString(), m->value, std::string("handlers.") + m->name.GetString(), env));
      }
    }
    if (auto it = doc.FindMember("event_types"); it != doc.MemberEnd()) {
      const Value& ts = need_object(it->value, "event_types");
      for (auto m = ts.MemberBegin(); m != ts.MemberEnd(); ++m) {
        c.event_types.push_back(parse_event_type(m->name.GetString(), m->value, std::string("event_types.") + m->name.GetString()));
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
      if (c.relay.claim == "transaction") {
        // The claim's transaction stays open while handlers run; long ones would hold back vacuum.
        if (h.timeout_ms > 10000) {
          fail("handlers." + h.name + ".timeout_ms", "must be at most 10000 with relay.claim \"transaction\"");
        }
        if (h.type == "sql") {
          fail("handlers." + h.name + ".type", "\"sql\" needs relay.claim \"lease\" (it records its own transaction)");
        }
      }
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
