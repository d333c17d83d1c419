// `pgrelay status`: counts by type and status, oldest pending age, live relays.
#include <cstdio>
#include <iostream>
#include <map>

#include "cli/common.hpp"
#include "core/log.hpp"
#include "store/admin_queries.hpp"
#include "store/ops_queries.hpp"

namespace pgrelay::cli {
namespace {

std::string number(double d) { return log::fixed3(d); }

}  // namespace

void add_status(CLI::App& app, Globals& g, Action& action) {
  auto* cmd = app.add_subcommand("status",
                                 "Show events by type and status (pending, processing, done, dead), the age of the\n"
                                 "oldest unfinished event, expired leases, and the relays seen in the last minute\n"
                                 "with whether their LISTEN connection is alive.");
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json, "Print as one JSON object");
  cmd->callback([&g, &action, json] {
    action = [&g, json] {
      Config c = load_config(g);
      auto conn = open_db(c, "status");
      Status s = read_status(*conn);
      const std::vector<PausedType> paused = list_paused(*conn);
      std::map<std::string, int64_t> totals;
      for (const auto& sc : s.counts) totals[sc.status] += sc.count;
      if (*json) {
        std::string out = "{\"totals\":{";
        bool first = true;
        for (const char* st : {"pending", "processing", "done", "dead"}) {
          out += std::string(first ? "" : ",") + "\"" + st + "\":" + std::to_string(totals[st]);
          first = false;
        }
        out += "},\"by_type\":[";
        for (size_t i = 0; i < s.counts.size(); ++i) {
          out += std::string(i ? "," : "") + "{\"type\":" + log::json_quoted(s.counts[i].event_type) +
                 ",\"status\":" + log::json_quoted(s.counts[i].status) +
                 ",\"count\":" + std::to_string(s.counts[i].count) + "}";
        }
        out += "],\"oldest_pending_age_s\":" + (s.oldest_pending_age_s ? number(*s.oldest_pending_age_s) : "null");
        out += ",\"expired_leases\":" + std::to_string(s.expired_leases) +
               ",\"producers_wake\":" + log::json_quoted(s.producers_wake);
        if (!s.capture.slot.empty()) {
          out += ",\"capture\":{\"slot\":" + log::json_quoted(s.capture.slot) +
                 ",\"active\":" + (s.capture.active ? "true" : "false") +
                 ",\"lag_bytes\":" + std::to_string(s.capture.lag_bytes) +
                 ",\"since_write_s\":" + number(s.capture.since_write_s) +
                 ",\"events\":" + std::to_string(s.capture.events) + "}";
        }
        out += ",\"relays\":[";
        for (size_t i = 0; i < s.relays.size(); ++i) {
          const auto& r = s.relays[i];
          out += std::string(i ? "," : "") + "{\"id\":" + log::json_quoted(r.id) +
                 ",\"wake\":" + log::json_quoted(r.wake) + ",\"listen_alive\":" + (r.listen_alive ? "true" : "false") +
                 ",\"seen_age_s\":" + number(r.seen_age_s) + ",\"last_notification_age_s\":" +
                 (r.last_notification_age_s ? number(*r.last_notification_age_s) : "null") +
                 ",\"in_flight\":" + std::to_string(r.in_flight) + ",\"delivered\":" + std::to_string(r.delivered) +
                 "}";
        }
        out += "],\"paused\":[";
        for (size_t i = 0; i < paused.size(); ++i) {
          out += std::string(i ? "," : "") + paused[i].json();
        }
        std::cout << out << "]}\n";
        return kOk;
      }
      std::printf("events: %lld pending, %lld processing, %lld done, %lld dead\n",
                  static_cast<long long>(totals["pending"]), static_cast<long long>(totals["processing"]),
                  static_cast<long long>(totals["done"]), static_cast<long long>(totals["dead"]));
      if (s.oldest_pending_age_s) std::printf("oldest unfinished: %.1f s\n", *s.oldest_pending_age_s);
      if (s.expired_leases) std::printf("expired leases: %lld\n", static_cast<long long>(s.expired_leases));
      if (!s.counts.empty()) {
        std::printf("\n%-40s %-11s %10s\n", "TYPE", "STATUS", "COUNT");
        for (const auto& sc : s.counts) {
          std::printf("%-40s %-11s %10lld\n", sc.event_type.c_str(), sc.status.c_str(),
                      static_cast<long long>(sc.count));
        }
      }
      if (!paused.empty()) {
        std::printf("\npaused types (not claimed until `pgrelay resume TYPE`): %zu\n", paused.size());
        for (const auto& p : paused) {
          const std::string below =
              p.pattern() ? " (every type below " + p.event_type.substr(0, p.event_type.size() - 1) + ")" : "";
          const std::string by = p.paused_by.empty() ? "" : " by " + p.paused_by;
          std::printf("  %s%s since %s%s%s%s\n", p.event_type.c_str(), below.c_str(), p.paused_at.c_str(), by.c_str(),
                      p.reason.empty() ? "" : ": ", p.reason.c_str());
        }
      }
      std::printf("\nrelays (seen in the last minute): %zu\n", s.relays.size());
      for (const auto& r : s.relays) {
        std::printf("  %s wake=%s listen=%s last_notification=%s in_flight=%d delivered=%lld\n", r.id.c_str(),
                    r.wake.c_str(),
                    r.wake == "poll" ? "none"
                    : r.listen_alive ? "alive"
                                     : "down",
                    r.last_notification_age_s ? (number(*r.last_notification_age_s) + "s ago").c_str() : "never",
                    r.in_flight, static_cast<long long>(r.delivered));
      }
      if (!s.capture.slot.empty()) {
        std::printf("capture wal: slot %s %s, %lld bytes behind, %lld events written\n", s.capture.slot.c_str(),
                    s.capture.active ? "being read" : "not read by any relay",
                    static_cast<long long>(s.capture.lag_bytes), static_cast<long long>(s.capture.events));
      }
      for (const auto& r : s.relays) {
        if (r.wake == s.producers_wake) continue;
        std::printf(
            "  warning: %s runs wake=%s but producers follow wake=%s, so it is woken only by its safety poll;"
            " run every relay of a database with one wake mode\n",
            r.id.c_str(), r.wake.c_str(), s.producers_wake.c_str());
      }
      return kOk;
    };
  });
}

}  // namespace pgrelay::cli
