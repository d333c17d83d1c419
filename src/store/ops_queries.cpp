// Pause/resume, replay, retention and sampling queries.
#include "store/ops_queries.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <pqxx/pqxx>
#include <pqxx/transaction>

#include "core/log.hpp"

namespace pgrelay {
namespace {

// One advisory lock key for retention sweeps: 'pgrl' 'rtnt' as two int32s.
constexpr int64_t kRetentionLockKey = 0x7067726c72746e74;

constexpr const char* kPausedSql =
    "SELECT event_type, paused_at::text, coalesce(reason, ''), coalesce(paused_by, '') FROM pgrelay.paused_types "
    "ORDER BY 1";

PausedType paused_from(const pqxx::row& row) {
  return {row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>(), row[3].as<std::string>()};
}

// Shared by the dry run and the real replay, so both take exactly the same rows.
// $1 type, $2 key, $3 since, $4 until, $5 from_id, $6 to_id.
constexpr const char* kReplayWhere = R"sql(
  status = 'done'
  AND ($1::text IS NULL OR event_type = $1 OR (right($1, 2) = '.*' AND starts_with(event_type, left($1, -1))))
  AND ($2::text IS NULL OR key = $2)
  AND ($3::timestamptz IS NULL OR created_at >= $3::timestamptz)
  AND ($4::timestamptz IS NULL OR created_at < $4::timestamptz)
  AND ($5::bigint IS NULL OR id >= $5)
  AND ($6::bigint IS NULL OR id <= $6)
)sql";

template <typename Tx>
pqxx::result exec_replay(Tx& tx, const std::string& sql, const ReplayFilter& f) {
  const std::pair<const std::optional<std::string>*, const char*> texts[] = {
      {&f.type, "type"}, {&f.key, "key"}, {&f.since, "since"}, {&f.until, "until"}};
  for (const auto& [v, name] : texts) {
    if (*v && !text_problem(**v).empty())
      throw InvalidText(std::string("the replay filter's ") + name + " " + text_problem(**v));
  }
  return tx.exec_params(sql, f.type, f.key, f.since, f.until, f.from_id, f.to_id, f.rate_per_s);
}

}  // namespace

bool PausedType::pattern() const {
  return event_type.size() > 2 && event_type.compare(event_type.size() - 2, 2, ".*") == 0;
}

std::string PausedType::json() const {
  return "{\"type\":" + log::json_quoted(event_type) + ",\"pattern\":" + (pattern() ? "true" : "false") +
         ",\"paused_at\":" + log::json_quoted(paused_at) + ",\"reason\":" + log::json_quoted(reason) +
         ",\"paused_by\":" + log::json_quoted(paused_by) + "}";
}

std::string pause_pattern_problem(const std::string& pattern) {
  if (pattern == "*") return "\"*\" would pause every type: stop the relays instead, or pause \"prefix.*\" patterns";
  const bool wildcard = pattern.size() > 2 && pattern.compare(pattern.size() - 2, 2, ".*") == 0;
  const std::string stem = wildcard ? pattern.substr(0, pattern.size() - 2) : pattern;
  if (pattern.size() > 200 || !event_type_problem(stem).empty() || !text_problem(pattern).empty()) {
    return "\"" + pattern + "\" is not an event type (letters, digits, _ . : -, at most 200) or \"prefix.*\"";
  }
  return {};
}

bool pause_covers(const std::string& pattern, const std::string& type) {
  if (pattern == type) return true;
  const bool wildcard = pattern.size() > 2 && pattern.compare(pattern.size() - 2, 2, ".*") == 0;
  // "user.*" covers "user.signed_up" and "user.a.b", not "user" or "users.x" (as the SQL: starts_with "user.").
  return wildcard && type.size() >= pattern.size() - 1 &&
         type.compare(0, pattern.size() - 1, pattern, 0, pattern.size() - 1) == 0;
}

bool event_type_stored(pqxx::connection& conn, const std::string& type) {
  pqxx::read_transaction tx(conn);
  return tx.exec_params1("SELECT EXISTS (SELECT 1 FROM pgrelay.db_events WHERE event_type = $1)", type)[0].as<bool>();
}

std::vector<std::string> stored_event_types(pqxx::connection& conn, int limit) {
  pqxx::read_transaction tx(conn);
  std::vector<std::string> out;
  for (const auto& row :
       tx.exec_params("SELECT DISTINCT event_type::text FROM pgrelay.db_events ORDER BY 1 LIMIT $1", limit)) {
    out.push_back(row[0].as<std::string>());
  }
  return out;
}

bool pause_type(pqxx::connection& conn, const std::string& type, const std::string& reason, const std::string& who) {
  if (!pause_pattern_problem(type).empty()) throw std::invalid_argument("pause_type: " + pause_pattern_problem(type));
  if (!text_problem(reason).empty()) throw InvalidText("the pause reason " + text_problem(reason));
  if (!text_problem(who).empty()) throw InvalidText("who paused it " + text_problem(who));
  pqxx::work tx(conn);
  // pgrelay.pause() also sets the type's pending events aside (triggers/45_pause.sql).
  const bool inserted =
      tx.exec_params1("SELECT pgrelay.pause($1, nullif($2, ''), nullif($3, ''))", type, reason, who)[0].as<bool>();
  tx.commit();
  return inserted;
}

bool resume_type(pqxx::connection& conn, const std::string& type) {
  if (!text_problem(type).empty()) throw InvalidText("the type to resume " + text_problem(type));
  pqxx::work tx(conn);
  // pgrelay.resume() makes the events set aside pending again and wakes the relays.
  const bool resumed = tx.exec_params1("SELECT pgrelay.resume($1)", type)[0].as<bool>();
  tx.commit();
  return resumed;
}

std::vector<PausedType> list_paused(pqxx::connection& conn) {
  pqxx::read_transaction tx(conn);
  std::vector<PausedType> out;
  for (const auto& row : tx.exec(kPausedSql)) {
    out.push_back(paused_from(row));
  }
  return out;
}

std::vector<ReplayEvent> replay_candidates(pqxx::connection& conn, const ReplayFilter& f) {
  pqxx::read_transaction tx(conn);
  std::vector<ReplayEvent> out;
  const std::string sql =
      "SELECT id, event_type, key, created_at::text, coalesce(finished_at::text, ''), $7::float8 "
      "  FROM pgrelay.db_events WHERE " +
      std::string(kReplayWhere) + " ORDER BY id";
  for (const auto& row : exec_replay(tx, sql, f)) {
    ReplayEvent e;
    e.id = row[0].as<int64_t>();
    e.type = row[1].as<std::string>();
    if (!row[2].is_null()) e.key = row[2].as<std::string>();
    e.created_at = row[3].as<std::string>();
    e.finished_at = row[4].as<std::string>();
    out.push_back(std::move(e));
  }
  return out;
}

int64_t replay(pqxx::connection& conn, const ReplayFilter& f) {
  pqxx::work tx(conn);
  // With a rate, the n-th event (in id order) becomes due n/rate seconds from
  // now: the relays pace themselves by next_attempt_at, no client loop needed.
  const std::string sql =
      "WITH pick AS (SELECT id FROM pgrelay.db_events WHERE " + std::string(kReplayWhere) +
      "               ORDER BY id FOR UPDATE), "
      "     numbered AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM pick) "
      "UPDATE pgrelay.db_events e "
      "   SET status = 'pending', attempts = 0, handlers_done = '{}', last_error = NULL, finished_at = NULL, "
      "       lease_owner = NULL, claim_token = NULL, "
      "       next_attempt_at = now() + CASE WHEN $7::float8 > 0 THEN numbered.n / $7::float8 ELSE 0 END "
      "                                 * interval '1 second' "
      "  FROM numbered WHERE e.id = numbered.id";
  const auto r = exec_replay(tx, sql, f);
  tx.exec("SELECT pgrelay.wake()");
  tx.commit();
  return static_cast<int64_t>(r.affected_rows());
}

int64_t delete_finished(pqxx::connection& conn, int64_t retention_s, int batch) {
  pqxx::work tx(conn);
  // A transaction-level lock works through a transaction-mode pooler too.
  if (!tx.exec_params1("SELECT pg_try_advisory_xact_lock($1)", kRetentionLockKey)[0].as<bool>()) return -1;
  // The CTE pins the victims (a subquery in WHERE id IN (...) may be re-planned);
  // SKIP LOCKED keeps the sweep from waiting on a replay in progress.
  const auto r = tx.exec_params(
      "WITH victims AS ("
      "  SELECT id FROM pgrelay.db_events "
      "   WHERE status = 'done' AND finished_at < now() - $1 * interval '1 second' "
      "   ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED) "
      "DELETE FROM pgrelay.db_events e USING victims WHERE e.id = victims.id",
      retention_s, batch);
  tx.commit();
  return static_cast<int64_t>(r.affected_rows());
}

int64_t delete_old_attempts(pqxx::connection& conn, int64_t retention_s, int batch) {
  pqxx::nontransaction tx(conn);  // the function's statement is its own transaction
  return tx.exec_params1("SELECT pgrelay.trim_attempts($1, $2)", retention_s, batch)[0].as<int64_t>();
}

DbSample read_sample(pqxx::connection& conn) {
  DbSample s;
  pqxx::read_transaction tx(conn);
  // Per transaction, so that it holds behind a pooler too: a sample never waits long
  // (readiness answers from it), and a large backlog's count is not worth compiling.
  tx.exec("SET LOCAL statement_timeout = '5s'");
  tx.exec("SET LOCAL jit = off");
  const auto paused_rows = tx.exec(kPausedSql);
  for (const auto& row : paused_rows) {
    s.paused.push_back(paused_from(row));
  }
  auto is_paused = [&s](const std::string& type) {
    for (const auto& p : s.paused) {
      if (pause_covers(p.event_type, type)) return true;
    }
    return false;
  };
  // One hash aggregate per type, paused or not decided here: a per-row test
  // against "prefix.*" patterns could not use a join.
  std::optional<double> oldest_due, oldest_created;
  for (const auto& row :
       tx.exec("SELECT event_type::text, count(*) FILTER (WHERE due), "
               "       count(*) FILTER (WHERE status = 'processing' AND NOT due), "
               "       count(*) FILTER (WHERE status = 'pending' AND NOT due), "
               "       extract(epoch FROM now() - min(next_attempt_at) FILTER (WHERE due))::float8, "
               "       extract(epoch FROM now() - min(created_at))::float8 "
               "  FROM (SELECT event_type, status, created_at, next_attempt_at, next_attempt_at <= now() AS due "
               "          FROM pgrelay.db_events WHERE status IN ('pending', 'processing')) u "
               " GROUP BY 1")) {
    const bool paused = is_paused(row[0].as<std::string>());
    (paused ? s.paused_backlog : s.backlog) += row[1].as<int64_t>();
    s.processing += row[2].as<int64_t>();
    s.scheduled += row[3].as<int64_t>();
    if (!paused && !row[4].is_null()) oldest_due = std::max(oldest_due.value_or(0.0), row[4].as<double>());
    if (!row[5].is_null()) oldest_created = std::max(oldest_created.value_or(0.0), row[5].as<double>());
  }
  if (oldest_due) s.oldest_due_wait_s = std::max(0.0, *oldest_due);
  if (oldest_created) s.oldest_pending_age_s = std::max(0.0, *oldest_created);

  std::map<std::string, TypeCounts> types;
  for (const auto& row :
       tx.exec("SELECT event_type, status, count(*) FROM pgrelay.db_events "
               " WHERE status IN ('pending', 'processing', 'blocked', 'paused', 'unrouted') GROUP BY 1, 2 "
               "UNION ALL "
               "SELECT event_type, status, count(*) FROM pgrelay.db_events WHERE status = 'dead' GROUP BY 1, 2")) {
    TypeCounts& t = types[row[0].as<std::string>()];
    t.event_type = row[0].as<std::string>();
    const std::string st = row[1].as<std::string>();
    const int64_t n = row[2].as<int64_t>();
    if (st == "pending") t.pending = n;
    else if (st == "processing") t.processing = n;
    else if (st == "blocked") t.blocked = n;
    else if (st == "paused") t.paused_events = n;
    else if (st == "unrouted") t.unrouted = n;
    else t.dead = n;
    if (st == "dead") s.dead += n;
    if (st == "blocked") s.blocked += n;
    if (st == "unrouted") s.unrouted += n;
    if (st == "paused") s.paused_backlog += n;
  }
  for (const auto& p : s.paused) {
    if (p.pattern()) continue;  // marks the types below, is not a type itself
    TypeCounts& t = types[p.event_type];
    t.event_type = p.event_type;
  }
  for (auto& [name, t] : types) t.paused = is_paused(name);
  for (auto& [name, t] : types) s.by_type.push_back(std::move(t));
  s.relays = live_relays(tx);
  s.capture = read_capture_lag(tx);
  return s;
}

}  // namespace pgrelay
