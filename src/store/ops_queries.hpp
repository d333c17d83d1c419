// Queries behind operations: pausing event types, replaying finished events,
// retention of finished events, and the gauges the admin server samples.
// Every value travels as a parameter. Each function runs its own transaction.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <pqxx/connection>

#include "store/admin_queries.hpp"

namespace pgrelay {

struct PausedType {
  std::string event_type;  // an exact type, or a pattern "prefix.*" as the operator wrote it
  std::string paused_at;
  std::string reason;
  std::string paused_by = {};  // "" for a pause from before 0009
  bool pattern() const;        // "prefix.*": every type below "prefix."
  // {"type","pattern","paused_at","reason","paused_by"}, as status --json and /status.json give it.
  std::string json() const;
};

// Why `pattern` cannot be paused, or "": it must be an event type (letters,
// digits, _ . : -, at most 200) or "prefix.*" with such a prefix. "*" is
// refused: stopping every type is stopping the relays.
std::string pause_pattern_problem(const std::string& pattern);
// Whether paused `pattern` (exact or "prefix.*") covers event type `type`.
bool pause_covers(const std::string& pattern, const std::string& type);

// Pauses `pattern` (an exact type or "prefix.*", stored as written); returns
// false when it was already paused (the reason is then updated).
// REQUIRES: pause_pattern_problem(pattern) is empty.
// `who` is recorded as who paused it ("" for the database role).
bool pause_type(pqxx::connection& conn, const std::string& pattern, const std::string& reason, const std::string& who);
// Resumes exactly `pattern` as it was paused and wakes the relays; returns false
// when it was not paused.
bool resume_type(pqxx::connection& conn, const std::string& pattern);
std::vector<PausedType> list_paused(pqxx::connection& conn);

// Whether any stored event (pending, processing, dead, or done and kept) has
// exactly type `type`. Reads the table: for operator commands, not hot paths.
bool event_type_stored(pqxx::connection& conn, const std::string& type);
// Up to `limit` distinct stored event types, sorted.
std::vector<std::string> stored_event_types(pqxx::connection& conn, int limit);

// Which finished events a replay takes.
struct ReplayFilter {
  std::optional<std::string> type;  // exact, or "prefix.*"
  std::optional<std::string> key;
  std::optional<std::string> since;  // created_at >= (timestamptz text)
  std::optional<std::string> until;  // created_at <
  std::optional<int64_t> from_id;    // id >=
  std::optional<int64_t> to_id;      // id <=
  double rate_per_s = 0;             // > 0: spread the replayed events' due times at this rate
  bool narrowed() const { return type || key || since || until || from_id || to_id; }
};

struct ReplayEvent {
  int64_t id = 0;
  std::string type;
  std::optional<std::string> key;
  std::string created_at;
  std::string finished_at;
};

// Exactly the events replay() would take with the same filter, in id order.
// With from_id/to_id, only events whose producing transaction is older than
// every transaction still running (xid < pg_snapshot_xmin) qualify, so an id
// range never depends on which lower ids happened to commit late.
std::vector<ReplayEvent> replay_candidates(pqxx::connection& conn, const ReplayFilter& f);
// Makes those events pending again: same id, attempts 0, handlers_done cleared;
// wakes the relays. Returns how many.
int64_t replay(pqxx::connection& conn, const ReplayFilter& f);

// Retention: deletes up to `batch` finished events older than `retention_s`, in
// one short transaction that holds pg_try_advisory_xact_lock so that only one
// relay sweeps at a time. Returns the rows deleted, or -1 when another relay
// holds the lock. Dead events are never touched.
int64_t delete_finished(pqxx::connection& conn, int64_t retention_s, int batch);

// Attempt log retention (pgrelay.trim_attempts()): deletes up to `batch` attempts older
// than `retention_s`, oldest first, one relay at a time. Returns the rows deleted, or -1
// when another relay holds the lock. Takes row locks only, so acks never wait for it.
int64_t delete_old_attempts(pqxx::connection& conn, int64_t retention_s, int batch);

// What the admin server samples from the database every few seconds.
struct TypeCounts {
  std::string event_type;
  int64_t pending = 0, processing = 0, dead = 0;
  int64_t blocked = 0, paused_events = 0, unrouted = 0;  // waiting: behind their key, paused, no relay routes it
  bool paused = false;
};
struct DbSample {
  int64_t backlog = 0;         // due events (pending, or processing with an expired lease) of unpaused types
  int64_t paused_backlog = 0;  // due events of paused types
  int64_t processing = 0;      // events under a live lease
  int64_t dead = 0;
  int64_t scheduled = 0;                       // pending but not yet due (retries waiting)
  int64_t blocked = 0;                         // waiting behind an earlier event of their key
  int64_t unrouted = 0;                        // of types no live relay routes (set aside, not a backlog)
  std::optional<double> oldest_due_wait_s;     // longest time a due event (unpaused) has waited
  std::optional<double> oldest_pending_age_s;  // age (since created_at) of the oldest unfinished event
  std::vector<TypeCounts> by_type;
  std::vector<PausedType> paused;
  std::vector<RelayInfo> relays;  // seen in the last minute
  CaptureLag capture;             // capture "wal": the slot's lag (slot empty otherwise)
};
DbSample read_sample(pqxx::connection& conn);

}  // namespace pgrelay
