// The admin actions (POST /admin/...): their JSON bodies, checked before any
// of it reaches SQL, and the queries they run on the worker's connection.
#include <rapidjson/document.h>

#include <pqxx/pqxx>

#include "core/log.hpp"
#include "http/admin_api.hpp"
#include "store/admin_queries.hpp"
#include "store/connection.hpp"
#include "store/ops_queries.hpp"

namespace pgrelay {
namespace {

constexpr int kKnownTypesListed = 50;

// A user-input problem in an admin action's body (answered with 400).
struct BadRequest : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::optional<std::string> opt_string(const rapidjson::Value& doc, const char* name) {
  auto it = doc.FindMember(name);
  if (it == doc.MemberEnd() || it->value.IsNull()) return std::nullopt;
  if (!it->value.IsString()) throw BadRequest(std::string("\"") + name + "\" must be a string");
  std::string s(it->value.GetString(), it->value.GetStringLength());
  // Checked before the empty test: "\u0000" must not read as "no filter".
  const std::string problem = text_problem(s);
  if (!problem.empty()) throw BadRequest(std::string("\"") + name + "\" " + problem);
  if (s.empty()) return std::nullopt;
  return s;
}

std::optional<int64_t> opt_int(const rapidjson::Value& doc, const char* name) {
  auto it = doc.FindMember(name);
  if (it == doc.MemberEnd() || it->value.IsNull()) return std::nullopt;
  if (!it->value.IsInt64()) throw BadRequest(std::string("\"") + name + "\" must be an integer");
  return it->value.GetInt64();
}

bool opt_bool(const rapidjson::Value& doc, const char* name) {
  auto it = doc.FindMember(name);
  if (it == doc.MemberEnd() || it->value.IsNull()) return false;
  if (!it->value.IsBool()) throw BadRequest(std::string("\"") + name + "\" must be true or false");
  return it->value.GetBool();
}

rapidjson::Document parse_body(const std::string& body) {
  rapidjson::Document doc;
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) {
    doc.SetObject();
    return doc;
  }
  doc.Parse<rapidjson::kParseIterativeFlag>(body.c_str(), body.size());
  if (doc.HasParseError() || !doc.IsObject()) throw BadRequest("the body must be a JSON object");
  return doc;
}

DeadFilter dead_filter(const rapidjson::Document& doc) {
  DeadFilter f;
  auto it = doc.FindMember("ids");
  if (it != doc.MemberEnd() && !it->value.IsNull()) {
    if (!it->value.IsArray()) throw BadRequest("\"ids\" must be an array of integers");
    for (const auto& v : it->value.GetArray()) {
      if (!v.IsInt64()) throw BadRequest("\"ids\" must be an array of integers");
      f.ids.push_back(v.GetInt64());
    }
  }
  f.type = opt_string(doc, "type");
  f.key = opt_string(doc, "key");
  f.error_contains = opt_string(doc, "error");
  f.older_than_s = opt_int(doc, "older_than_s");
  const bool narrowed = !f.ids.empty() || f.type || f.key || f.error_contains || f.older_than_s;
  if (!narrowed && !opt_bool(doc, "all")) {
    throw BadRequest("name events with ids/type/key/error/older_than_s, or pass \"all\": true");
  }
  return f;
}

ReplayFilter replay_filter(const rapidjson::Document& doc) {
  ReplayFilter f;
  f.type = opt_string(doc, "type");
  f.key = opt_string(doc, "key");
  f.since = opt_string(doc, "since");
  f.until = opt_string(doc, "until");
  f.from_id = opt_int(doc, "from_id");
  f.to_id = opt_int(doc, "to_id");
  auto it = doc.FindMember("rate");
  if (it != doc.MemberEnd() && !it->value.IsNull()) {
    if (!it->value.IsNumber() || it->value.GetDouble() <= 0)
      throw BadRequest("\"rate\" must be a positive number (events per second)");
    f.rate_per_s = it->value.GetDouble();
  }
  if (!f.narrowed() && !opt_bool(doc, "all")) {
    throw BadRequest("name events with type/key/since/until/from_id/to_id, or pass \"all\": true");
  }
  return f;
}

std::string path_of(const std::string& target) { return target.substr(0, target.find('?')); }

// The admin API cannot see the relay's routes: a type is known when a stored
// event has it. Patterns are not checked (they may name types still to come).
bool type_is_known(pqxx::connection& c, const std::string& type) {
  return PausedType{type, "", ""}.pattern() || event_type_stored(c, type);
}

std::string known_list(pqxx::connection& c) {
  std::string out;
  for (const auto& t : stored_event_types(c, kKnownTypesListed)) out += (out.empty() ? "" : ", ") + t;
  return out.empty() ? "none stored yet" : out;
}

}  // namespace

AdminResponse AdminApi::run_action(const AdminRequest& req) {
  const std::string path = path_of(req.target);
  if (path.rfind("/admin/api/", 0) == 0) return run_read(req);
  try {
    const rapidjson::Document doc = parse_body(req.body);
    if (!action_conn_) action_conn_ = connect(options_.database_url, "admin-action");
    pqxx::connection& c = *action_conn_;
    std::string out;
    if (path == "/admin/dead/retry") {
      out = "{\"retried\":" + std::to_string(retry_dead(c, dead_filter(doc))) + "}";
    } else if (path == "/admin/dead/purge") {
      out = "{\"purged\":" + std::to_string(purge_dead(c, dead_filter(doc))) + "}";
    } else if (path == "/admin/pause" || path == "/admin/resume") {
      const auto type = opt_string(doc, "type");
      if (!type) throw BadRequest("\"type\" is required (an event type or \"prefix.*\")");
      if (path == "/admin/pause") {
        const std::string reason = opt_string(doc, "reason").value_or("");
        const std::string problem = pause_pattern_problem(*type);
        if (!problem.empty()) throw BadRequest("\"type\": " + problem);
        if (!opt_bool(doc, "force") && !type_is_known(c, *type)) {
          throw BadRequest("\"type\": \"" + *type + "\" is not a known event type: no stored event has it (known: " +
                           known_list(c) + "); check the spelling, or send \"force\": true to pause it anyway");
        }
        // The token is shared, so the console cannot say who: the operator may (a "by" field).
        const std::string by = opt_string(doc, "by").value_or("console");
        const bool fresh = pause_type(c, *type, reason, by);
        out = "{\"paused\":" + log::json_quoted(*type) +
              ",\"pattern\":" + (PausedType{*type, "", ""}.pattern() ? "true" : "false") +
              ",\"was_paused\":" + (fresh ? "false" : "true") + "}";
      } else {
        const bool was = resume_type(c, *type);
        out = "{\"resumed\":" + log::json_quoted(*type) + ",\"was_paused\":" + (was ? "true" : "false") +
              ",\"still_paused_by\":[";
        bool first = true;
        for (const auto& p : list_paused(c)) {
          if (!pause_covers(p.event_type, *type)) continue;
          out += (first ? "" : ",") + log::json_quoted(p.event_type);
          first = false;
        }
        out += "]}";
      }
    } else if (path == "/admin/replay") {
      const ReplayFilter f = replay_filter(doc);
      if (opt_bool(doc, "dry_run")) {
        const auto events = replay_candidates(c, f);
        out = "{\"dry_run\":true,\"count\":" + std::to_string(events.size()) + ",\"ids\":[";
        for (size_t i = 0; i < events.size(); ++i) out += (i ? "," : "") + std::to_string(events[i].id);
        out += "]}";
      } else {
        out = "{\"replayed\":" + std::to_string(replay(c, f)) + "}";
      }
    } else {
      return AdminResponse::json_error(
          404, "unknown admin action " + path +
                   " (known: /admin/dead/retry, /admin/dead/purge, /admin/pause, /admin/resume, /admin/replay)");
    }
    log::info("admin action", {{"action", path}, {"result", out}});
    return AdminResponse::json(200, out);
  } catch (const BadRequest& e) {
    return AdminResponse::json_error(400, std::string(path) + ": " + e.what());
  } catch (const InvalidText& e) {
    return AdminResponse::json_error(400, std::string(path) + ": " + e.what());
  } catch (const pqxx::sql_error& e) {
    const std::string& state = e.sqlstate();
    if (state.rfind("22", 0) == 0) return AdminResponse::json_error(400, std::string(path) + ": " + e.what());
    action_conn_.reset();
    log::error("admin action failed", {{"action", path}, {"error", e.what()}});
    return AdminResponse::json_error(500, std::string(path) + ": " + e.what());
  } catch (const std::exception& e) {
    action_conn_.reset();
    log::error("admin action failed", {{"action", path}, {"error", e.what()}});
    return AdminResponse::json_error(503, std::string(path) + ": database unavailable: " + e.what());
  }
}

}  // namespace pgrelay
