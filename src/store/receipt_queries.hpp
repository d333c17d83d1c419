// Receipts: where an event is and how each of its delivery attempts went, read from
// pgrelay.db_events and the attempt log (pgrelay.event_state(), triggers/50_attempts.sql).
// Behind `pgrelay events`, `pgrelay wait` and the console's event page.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <pqxx/connection>

#include "store/admin_queries.hpp"

namespace pgrelay {

// pgrelay.event_state(id) as JSON text: status, attempts, last outcome per handler.
// Statuses: the row's (pending, processing, blocked, paused, unrouted, done, dead) while
// db_events holds it; then "done" or "purged" from the attempt log; "removed" when neither
// knows (finished or purged, the log off or past its retention); "unknown" for an id the
// table never issued.
std::string event_state_json(pqxx::connection& conn, int64_t id);

// The statuses of many events in one round trip, in the order of `ids`.
std::vector<std::pair<int64_t, std::string>> event_statuses(pqxx::connection& conn, const std::vector<int64_t>& ids);

// The receipt with the event itself (payload, headers) and every attempt in order:
//   event_state's document plus "payload", "headers" (null once the row is gone) and
//   "attempt_log": [{"handler", "attempt", "relay", "started_at", "duration_ms", "outcome",
//                    "http_status", "exit_code", "error", "response_head"}]
std::string event_history_json(pqxx::connection& conn, int64_t id);

// An event of `pgrelay events list`.
struct EventRow {
  int64_t id = 0;
  std::string type;
  std::optional<std::string> key;
  std::string status;
  int attempts = 0;
  std::string last_error;
  std::string created_at;
};

// Events db_events holds that match the dead-letter filter's fields (type, key, error
// text, ids; older_than_s by finished time, or created time while unfinished) and, when
// set, `status`; oldest first, at most f.limit.
std::vector<EventRow> list_events(pqxx::connection& conn, const DeadFilter& f,
                                  const std::optional<std::string>& status);

}  // namespace pgrelay
