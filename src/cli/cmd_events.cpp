// `pgrelay events show ID` and `pgrelay events list`: receipts, what became of an event
// and every attempt to deliver it (store/receipt_queries.hpp).
#include <iostream>

#include <rapidjson/document.h>

#include "cli/common.hpp"
#include "cli/event_filters.hpp"
#include "core/log.hpp"
#include "store/receipt_queries.hpp"

namespace pgrelay::cli {
namespace {

std::string text_of(const rapidjson::Value& v, const char* name, const char* absent = "-") {
  auto it = v.FindMember(name);
  if (it == v.MemberEnd() || it->value.IsNull()) return absent;
  if (it->value.IsString()) return it->value.GetString();
  if (it->value.IsInt64()) return std::to_string(it->value.GetInt64());
  if (it->value.IsDouble()) return log::fixed3(it->value.GetDouble());
  if (it->value.IsBool()) return it->value.GetBool() ? "yes" : "no";
  return absent;
}

// The receipt for a person: the event, then one line per attempt with what came back.
void print_history(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.c_str(), json.size());
  std::cout << "event " << text_of(d, "id") << "  " << text_of(d, "status") << "\n";
  std::cout << "  type " << text_of(d, "type") << "  key " << text_of(d, "key") << "  created "
            << text_of(d, "created_at") << "\n";
  std::cout << "  attempts " << text_of(d, "attempts") << "  finished " << text_of(d, "finished_at") << "\n";
  if (text_of(d, "last_error", "").size()) std::cout << "  last error: " << text_of(d, "last_error") << "\n";
  const auto& log = d["attempt_log"];
  if (log.Empty()) {
    std::cout << "  no attempts recorded (none yet, attempts.enabled false, or past attempts.retention_s)\n";
    return;
  }
  for (const auto& a : log.GetArray()) {
    std::string answer;
    if (!a["http_status"].IsNull()) answer = "  HTTP " + text_of(a, "http_status");
    if (!a["exit_code"].IsNull()) answer = "  exit " + text_of(a, "exit_code");
    std::cout << "  #" << text_of(a, "attempt") << "  " << text_of(a, "handler") << "  " << text_of(a, "outcome")
              << answer << "  " << text_of(a, "duration_ms") << " ms  at " << text_of(a, "started_at") << "  by "
              << text_of(a, "relay") << "\n";
    if (!a["error"].IsNull()) std::cout << "      error: " << text_of(a, "error") << "\n";
    if (!a["response_head"].IsNull()) std::cout << "      response: " << text_of(a, "response_head") << "\n";
  }
}

}  // namespace

void add_events(CLI::App& app, Globals& g, Action& action) {
  auto* events = app.add_subcommand(
      "events",
      "Receipts: what became of an event and every attempt to deliver it (the attempt log keeps\n"
      "attempts for attempts.retention_s; finished events stay in db_events for relay.done_retention_s).");
  events->require_subcommand(1);

  auto id = std::make_shared<int64_t>(0);
  auto json = std::make_shared<bool>(false);
  auto* show = events->add_subcommand("show", "One event and its attempts, in order");
  show->add_option("id", *id, "Event id")->required()->check(event_id_validator());
  show->add_flag("--json", *json, "One JSON object (pgrelay.event_state() with payload and attempt_log)");
  show->callback([&g, &action, id, json] {
    action = [&g, id, json] {
      Config c = load_config(g);
      auto conn = open_db(c, "events");
      const std::string doc = event_history_json(*conn, *id);
      if (*json) {
        std::cout << doc << "\n";
      } else {
        print_history(doc);
      }
      return kOk;
    };
  });

  auto a = std::make_shared<FilterArgs>();
  auto status = std::make_shared<std::string>();
  auto* list = events->add_subcommand("list", "Events pgrelay.db_events holds, oldest first");
  add_filters(list, *a, "Finished (or, unfinished, created) at least this many seconds ago");
  list->add_option("--status", *status, "Only this status")
      ->check(CLI::IsMember({"pending", "processing", "blocked", "paused", "unrouted", "done", "dead"}));
  list->add_option("--limit", a->limit, "At most this many")->check(CLI::Range(1, 100000))->capture_default_str();
  list->add_flag("--json", a->json, "One JSON object per line");
  list->callback([&g, &action, a, status] {
    action = [&g, a, status] {
      const DeadFilter f = a->filter();
      Config c = load_config(g);
      auto conn = open_db(c, "events");
      const auto rows = list_events(*conn, f, status->empty() ? std::nullopt : std::optional<std::string>(*status));
      if (rows.empty()) (a->json ? std::cerr : std::cout) << "events list: no events match\n";
      for (const EventRow& e : rows) {
        if (a->json) {
          std::cout << "{\"id\":" << e.id << ",\"type\":" << log::json_quoted(e.type)
                    << ",\"key\":" << (e.key ? log::json_quoted(*e.key) : "null")
                    << ",\"status\":" << log::json_quoted(e.status) << ",\"attempts\":" << e.attempts
                    << ",\"last_error\":" << log::json_quoted(e.last_error)
                    << ",\"created_at\":" << log::json_quoted(e.created_at) << "}\n";
        } else {
          std::cout << e.id << "  " << e.type << "  key=" << e.key.value_or("-") << "  " << e.status
                    << "  attempts=" << e.attempts << "  created " << e.created_at << "\n";
          if (!e.last_error.empty()) std::cout << "    " << e.last_error << "\n";
        }
      }
      return kOk;
    };
  });
}

}  // namespace pgrelay::cli
