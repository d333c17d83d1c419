// Config parsing and validation: every error names the key path and what is wrong.
#include "core/config.hpp"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <algorithm>
#include <cctype>
#include <regex>

#include "core/config_env.hpp"
#include "core/config_handler.hpp"
#include "core/config_json.hpp"
#include "core/outcome.hpp"

namespace pgrelay {
namespace {

using namespace config_json;

// Host names as a browser sends them in Host (no port, no scheme), lower-cased.
std::vector<std::string> parse_allowed_hosts(const Value& v, const std::string& path) {
  std::vector<std::string> hosts = need_string_array(v, path, true);
  static const std::regex host("^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252}))$");
  for (size_t i = 0; i < hosts.size(); ++i) {
    if (!std::regex_match(hosts[i], host)) {
      fail(path + "[" + std::to_string(i) + "]",
           "must be a host name or address without port or scheme, like pgrelay.internal (got \"" + hosts[i] + "\")");
    }
    std::transform(hosts[i].begin(), hosts[i].end(), hosts[i].begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  }
  return hosts;
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

}  // namespace

const HandlerConfig* Config::handler(const std::string& name) const {
  for (const auto& h : handlers) {
    if (h.name == name) return &h;
  }
  return nullptr;
}

Config parse_config(const std::string& json_text, const EnvLookup& env, Secrets secrets) {
  rapidjson::Document doc;
  constexpr unsigned kFlags = rapidjson::kParseCommentsFlag | rapidjson::kParseTrailingCommasFlag |
                              rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag;
  doc.Parse<kFlags>(json_text.c_str(), json_text.size());
  if (doc.HasParseError()) {
    throw ConfigError("config: invalid JSON at " + text_position(json_text, doc.GetErrorOffset()) + " (byte " +
                      std::to_string(doc.GetErrorOffset()) + "): " + rapidjson::GetParseError_En(doc.GetParseError()));
  }
  if (!doc.IsObject()) throw ConfigError(std::string("config: the document must be an object, not ") + json_kind(doc));
  reject_duplicate_keys(doc);
  std::vector<std::pair<std::string, std::string>> env_origin;
  apply_env_overrides(doc, env, &env_origin);

  try {
    Config c;
    // "$schema" names config/pgrelay.schema.json for editors; the relay does not read it.
    check_keys(doc, "",
               {"$schema", "database", "relay", "log", "attempts", "admin", "handlers", "routes", "event_types"});
    if (auto it = doc.FindMember("$schema"); it != doc.MemberEnd()) need_string(it->value, "$schema");
    each(doc, "database", "database", {"url", "listen_url"},
         [&](const std::string& k, const Value& v, const std::string& p) {
           if (k == "url") c.database.url = need_string(v, p);
           else c.database.listen_url = need_string(v, p);
         });
    each(doc, "relay", "relay",
         {"id", "batch_size", "max_in_flight", "lease_ms", "poll_interval_ms", "poll_max_ms", "wake", "capture",
          "claim", "done_retention_s", "shutdown_timeout_ms", "ack_delay_ms"},
         [&](const std::string& k, const Value& v, const std::string& p) {
           RelayOptions& r = c.relay;
           if (k == "id") r.id = need_string(v, p, 200);
           else if (k == "batch_size") r.batch_size = static_cast<int>(need_int(v, p, 1, 10000));
           else if (k == "max_in_flight") r.max_in_flight = static_cast<int>(need_int(v, p, 1, 100000));
           else if (k == "lease_ms") r.lease_ms = need_int(v, p, 1000, 86400000);
           else if (k == "poll_interval_ms") r.poll_interval_ms = need_int(v, p, 10, 3600000);
           else if (k == "poll_max_ms") r.poll_max_ms = need_int(v, p, 1, 60000);
           else if (k == "wake") r.wake = need_choice(v, p, {"notify", "poll", "wal"});
           else if (k == "capture") r.capture = need_choice(v, p, {"trigger", "wal"});
           else if (k == "claim") r.claim = need_choice(v, p, {"lease", "transaction"});
           else if (k == "done_retention_s") r.done_retention_s = need_int(v, p, 0, 366LL * 86400);
           else if (k == "shutdown_timeout_ms") r.shutdown_timeout_ms = need_int(v, p, 0, 3600000);
           else if (k == "ack_delay_ms") r.ack_delay_ms = need_int(v, p, 0, 1000);
         });
    each(doc, "attempts", "attempts", {"enabled", "response_head_bytes", "retention_s"},
         [&](const std::string& k, const Value& v, const std::string& p) {
           AttemptLogOptions& a = c.attempts;
           if (k == "enabled") {
             if (!v.IsBool()) fail(p, std::string("must be true or false, not ") + json_kind(v));
             a.enabled = v.GetBool();
           } else if (k == "response_head_bytes") {
             a.response_head_bytes =
                 static_cast<int>(need_int(v, p, 0, static_cast<int64_t>(Outcome::kMaxResponseHead)));
           } else {
             a.retention_s = need_int(v, p, 60, 366LL * 86400);
           }
         });
    each(doc, "log", "log", {"level", "format"}, [&](const std::string& k, const Value& v, const std::string& p) {
      if (k == "level") c.log.level = need_choice(v, p, {"debug", "info", "warn", "error"});
      else c.log.format = need_choice(v, p, {"auto", "json", "text"});
    });
    if (auto it = doc.FindMember("admin"); it != doc.MemberEnd()) {
      const Value& a = need_object(it->value, "admin");
      check_keys(a, "admin",
                 {"listen", "token", "token_env", "ready_max_backlog", "ready_max_oldest_pending_s", "allowed_hosts"});
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
        else if (k == "ready_max_oldest_pending_s")
          c.admin.ready_max_oldest_pending_s = need_int(m->value, p, 1, 365LL * 86400);
        else if (k == "allowed_hosts") c.admin.allowed_hosts = parse_allowed_hosts(m->value, p);
      }
      c.admin.token = read_secret(a, "admin", "token", env, secrets);
    }
    if (auto it = doc.FindMember("handlers"); it != doc.MemberEnd()) {
      const Value& hs = need_object(it->value, "handlers");
      for (auto m = hs.MemberBegin(); m != hs.MemberEnd(); ++m) {
        c.handlers.push_back(
            parse_handler(m->name.GetString(), m->value, std::string("handlers.") + m->name.GetString(), env, secrets));
      }
    }
    if (auto it = doc.FindMember("event_types"); it != doc.MemberEnd()) {
      const Value& ts = need_object(it->value, "event_types");
      for (auto m = ts.MemberBegin(); m != ts.MemberEnd(); ++m) {
        c.event_types.push_back(
            parse_event_type(m->name.GetString(), m->value, std::string("event_types.") + m->name.GetString()));
      }
    }
    std::vector<std::string> names;
    for (const auto& h : c.handlers) names.push_back(h.name);
    if (auto it = doc.FindMember("routes"); it != doc.MemberEnd()) {
      if (!it->value.IsArray()) fail("routes", std::string("must be an array, not ") + json_kind(it->value));
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
            fail(p + ".handlers[" + std::to_string(j) + "]", "\"" + route.handlers[j] + "\" is not defined (known: " +
                                                                 (names.empty() ? "none" : join(names)) + ")");
          }
        }
        c.routes.push_back(std::move(route));
      }
    }
    for (auto& h : c.handlers) {
      if (!h.timeout_given) {
        // The 30 s default would be refused below with a short lease or a transactional
        // claim: an unset timeout takes the longest one the relay's settings allow.
        const int64_t allowed = c.relay.claim == "transaction" ? 10000 : c.relay.lease_ms * 4 - 1;
        h.timeout_ms = std::min(h.timeout_ms, allowed);
      }
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
        fail("handlers." + h.name + ".timeout_ms",
             "must be below 4 x relay.lease_ms (" + std::to_string(c.relay.lease_ms * 4) + ")");
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

int webhook_pool_size(const HandlerConfig& h) {
  const int concurrency = std::max(1, h.concurrency);
  return h.pool_size > 0 ? std::min(h.pool_size, concurrency) : concurrency;
}

void require_deliverable(const Config& c) {
  if (c.routes.empty()) {
    throw ConfigError(
        "config: routes is empty: no event would be delivered (add {\"match\": \"orders.*\", \"handlers\": [\"...\"]}; "
        "see config/README.md)");
  }
}

std::vector<std::string> config_warnings(const Config& c) {
  std::vector<std::string> out;
  for (const auto& h : c.handlers) {
    if (h.type != "webhook" || h.pool_size <= 0 || h.pool_size >= h.concurrency) continue;
    out.push_back("handlers." + h.name + ".pool_size " + std::to_string(h.pool_size) + " is below its concurrency " +
                  std::to_string(h.concurrency) + ": at most " + std::to_string(h.pool_size) +
                  " requests are in flight and the other deliveries wait for a connection (remove pool_size to "
                  "follow concurrency)");
  }
  return out;
}

}  // namespace pgrelay
