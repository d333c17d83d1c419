// Queries behind the operator commands: status, emit, track, dead letters.
// Every value travels as a parameter; identifiers go through regclass/format('%I') in SQL.
#pragma once
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <pqxx/connection>
#include <pqxx/transaction_base>

#include "store/wal_capture_queries.hpp"

namespace pgrelay {

// Why `s` cannot travel as PostgreSQL text, or "" when it can: a NUL byte
// (libpq ends the string there, so `{"error":"\u0000"}` became an empty filter
// that matched every dead letter) or bytes that are not UTF-8. Callers check
// every name and filter with this first, to name the field in their error.
std::string text_problem(std::string_view s);

// Why `type` is not an event type pgrelay.db_events takes (the rule of its
// db_events_type_valid constraint: letters, digits, _ . : -, not starting with
// . : -, at most 200 characters), or "" when it is.
std::string event_type_problem(const std::string& type);

// Thrown by the queries below when a name or filter fails text_problem(): the
// last line of defence, so no caller can widen a filter by accident.
struct InvalidText : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct StatusCount {
  std::string event_type;
  std::string status;
  int64_t count = 0;
};

struct RelayInfo {
  std::string id;
  std::string wake;
  bool listen_alive = false;
  double seen_age_s = 0;
  std::optional<double> last_notification_age_s;
  int in_flight = 0;
  int64_t delivered = 0;
};

// Relays that reported in the last minute, by id.
std::vector<RelayInfo> live_relays(pqxx::transaction_base& tx);

struct Status {
  std::vector<StatusCount> counts;  // by type and status
  std::optional<double> oldest_pending_age_s;
  int64_t expired_leases = 0;     // processing rows whose lease ran out
  std::vector<RelayInfo> relays;  // seen in the last minute
  std::string producers_wake;     // the wake mode producers' triggers follow (pgrelay.settings)
  CaptureLag capture;             // capture "wal": the slot's lag (slot empty otherwise)
};

Status read_status(pqxx::connection& conn);

int64_t emit_event(pqxx::connection& conn, const std::string& type, const std::string& payload_json,
                   const std::optional<std::string>& key, const std::string& headers_json);

struct TrackOptions {
  std::optional<std::vector<std::string>> key_columns;
  std::optional<std::vector<std::string>> include_columns;
  std::vector<std::string> exclude_columns;
  std::vector<std::string> operations = {"insert", "update", "delete"};
  std::optional<std::string> event_prefix;
};
void track_table(pqxx::connection& conn, const std::string& table, const TrackOptions& opts);
// Whether `table` (regclass text) has a primary key; throws pqxx::sql_error
// (undefined_table) when there is no such table.
bool has_primary_key(pqxx::connection& conn, const std::string& table);
// Whether the pgrelay schema is installed (pgrelay migrate ran); one catalog lookup.
bool is_migrated(pqxx::connection& conn);
bool untrack_table(pqxx::connection& conn, const std::string& table);

// Which dead letters an operator means.
struct DeadFilter {
  std::vector<int64_t> ids;
  std::optional<std::string> type;  // exact, or "prefix.*"
  std::optional<std::string> key;
  std::optional<int64_t> older_than_s;  // finished at least this long ago
  std::optional<std::string> error_contains;
  int limit = 100;  // list only
};

struct DeadEvent {
  int64_t id = 0;
  std::string type;
  std::optional<std::string> key;
  int attempts = 0;
  std::string last_error;
  std::string created_at;
  std::string finished_at;
  std::string payload;
};

std::vector<DeadEvent> list_dead(pqxx::connection& conn, const DeadFilter& f);
// Makes matching dead events pending again with attempts reset; returns how many.
int64_t retry_dead(pqxx::connection& conn, const DeadFilter& f);
// Deletes matching dead events; returns how many.
int64_t purge_dead(pqxx::connection& conn, const DeadFilter& f);

// Makes producers' triggers follow `mode` (notify sends NOTIFY; poll and wal do not)
// when the database is not already in it; returns the mode it was in.
std::string set_wake_mode(pqxx::connection& conn, const std::string& mode);

// Records this relay's liveness in pgrelay.relays.
void report_relay(pqxx::connection& conn, const RelayInfo& r);
void forget_relay(pqxx::connection& conn, const std::string& id);

}  // namespace pgrelay
