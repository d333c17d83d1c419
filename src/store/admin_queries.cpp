// Operator queries; filters are parameters, never spliced into SQL text.
#include "store/admin_queries.hpp"

#include <pqxx/pqxx>
#include <pqxx/transaction>
#include <regex>

#include "store/queue.hpp"

namespace pgrelay {
namespace {

// Shared WHERE clause for dead-letter filters; parameters $1..$5.
constexpr const char* kDeadWhere = R"sql(
  status = 'dead'
  AND (cardinality($1::bigint[]) = 0 OR id = ANY ($1::bigint[]))
  AND ($2::text IS NULL OR event_type = $2 OR (right($2, 2) = '.*' AND starts_with(event_type, left($2, -1))))
  AND ($3::text IS NULL OR key = $3)
  AND ($4::bigint IS NULL OR finished_at <= now() - $4 * interval '1 second')
  AND ($5::text IS NULL OR strpos(last_error, $5) > 0)
)sql";

std::string id_array(const std::vector<int64_t>& ids) {
  std::string out = "{";
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? "," : "") + std::to_string(ids[i]);
  return out + "}";
}

void require_text(const std::optional<std::string>& s, const char* what) {
  if (!s) return;
  const std::string problem = text_problem(*s);
  if (!problem.empty()) throw InvalidText(std::string(what) + " " + problem);
}

template <typename Tx>
pqxx::result exec_dead(Tx& tx, const std::string& sql, const DeadFilter& f) {
  require_text(f.type, "the dead-letter filter's type");
  require_text(f.key, "the dead-letter filter's key");
  require_text(f.error_contains, "the dead-letter filter's error text");
  return tx.exec_params(sql, id_array(f.ids), f.type, f.key, f.older_than_s, f.error_contains);
}

std::optional<std::string> array_or_null(const std::optional<std::vector<std::string>>& v) {
  if (!v) return std::nullopt;
  return text_array_literal(*v);
}

}  // namespace

std::string text_problem(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == 0) return "contains a NUL byte (at byte " + std::to_string(i) + "), which PostgreSQL text cannot hold";
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok && len > 1) {
      // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8 either.
      const auto c1 = static_cast<unsigned char>(s[i + 1]);
      if (len == 2) ok = c >= 0xC2;
      if (len == 3) ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);
      if (len == 4) ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90) && c <= 0xF4;
    }
    if (!ok) return "is not valid UTF-8 (at byte " + std::to_string(i) + ")";
    i += len;
  }
  return {};
}

std::string event_type_problem(const std::string& type) {
  static const std::regex rule("^[A-Za-z0-9_][A-Za-z0-9_.:-]*$");
  if (type.empty()) return "is empty";
  if (type.size() > 200) return "is longer than 200 characters";
  if (!std::regex_match(type, rule)) {
    return "\"" + type + "\" is not an event type: letters, digits and _ . : - only, not starting with . : -";
  }
  return {};
}

bool is_migrated(pqxx::connection& conn) {
  pqxx::read_transaction tx(conn);
  return !tx.exec("SELECT 1 WHERE to_regclass('pgrelay.db_events') IS NOT NULL").empty();
}

bool has_primary_key(pqxx::connection& conn, const std::string& table) {
  pqxx::read_transaction tx(conn);
  return tx
      .exec_params1("SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = $1::text::regclass AND indisprimary)",
                    table)[0]
      .as<bool>();
}

Status read_status(pqxx::connection& conn) {
  Status s;
  pqxx::read_transaction tx(conn);
  for (const auto& row :
       tx.exec("SELECT event_type, status, count(*) FROM pgrelay.db_events GROUP BY 1, 2 ORDER BY 1, 2")) {
    s.counts.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<int64_t>()});
  }
  auto r = tx.exec1(
      "SELECT extract(epoch FROM now() - min(created_at))::float8, "
      "       count(*) FILTER (WHERE status = 'processing' AND next_attempt_at < now()) "
      "  FROM pgrelay.db_events WHERE status IN ('pending', 'processing', 'blocked', 'paused', 'unrouted')");
  if (!r[0].is_null()) s.oldest_pending_age_s = r[0].as<double>();
  s.expired_leases = r[1].as<int64_t>();
  s.relays = live_relays(tx);
  auto w = tx.exec("SELECT value FROM pgrelay.settings WHERE name = 'wake'");
  s.producers_wake = w.empty() ? "notify" : w[0][0].as<std::string>();
  s.capture = read_capture_lag(tx);
  return s;
}

std::vector<RelayInfo> live_relays(pqxx::transaction_base& tx) {
  std::vector<RelayInfo> out;
  for (const auto& row :
       tx.exec("SELECT id, wake, listen_alive, extract(epoch FROM now() - seen_at)::float8, "
               "       extract(epoch FROM now() - last_notification_at)::float8, in_flight, delivered "
               "  FROM pgrelay.relays WHERE seen_at > now() - interval '1 minute' ORDER BY id")) {
    RelayInfo ri;
    ri.id = row[0].as<std::string>();
    ri.wake = row[1].as<std::string>();
    ri.listen_alive = row[2].as<bool>();
    ri.seen_age_s = row[3].as<double>();
    if (!row[4].is_null()) ri.last_notification_age_s = row[4].as<double>();
    ri.in_flight = row[5].as<int>();
    ri.delivered = row[6].as<int64_t>();
    out.push_back(std::move(ri));
  }
  return out;
}

int64_t emit_event(pqxx::connection& conn, const std::string& type, const std::string& payload_json,
                   const std::optional<std::string>& key, const std::string& headers_json) {
  require_text(type, "the event type");
  require_text(key, "the event key");
  pqxx::work tx(conn);
  const int64_t id =
      tx.exec_params1("SELECT pgrelay.emit($1, $2::jsonb, $3, $4::jsonb)", type, payload_json, key, headers_json)[0]
          .as<int64_t>();
  tx.commit();
  return id;
}

void track_table(pqxx::connection& conn, const std::string& table, const TrackOptions& o) {
  pqxx::work tx(conn);
  tx.exec_params("SELECT pgrelay.track($1::text::regclass, $2::text[], $3::text[], $4::text[], $5::text[], $6::text)",
                 table, array_or_null(o.key_columns), array_or_null(o.include_columns),
                 text_array_literal(o.exclude_columns), text_array_literal(o.operations), o.event_prefix);
  tx.commit();
}

bool untrack_table(pqxx::connection& conn, const std::string& table) {
  pqxx::work tx(conn);
  const bool found = tx.exec_params1("SELECT pgrelay.untrack($1::text::regclass)", table)[0].as<bool>();
  tx.commit();
  return found;
}

std::vector<DeadEvent> list_dead(pqxx::connection& conn, const DeadFilter& f) {
  pqxx::read_transaction tx(conn);
  std::vector<DeadEvent> out;
  const std::string sql =
      "SELECT id, event_type, key, attempts, coalesce(last_error, ''), created_at::text, "
      "       coalesce(finished_at::text, ''), payload::text "
      "  FROM pgrelay.db_events WHERE " +
      std::string(kDeadWhere) + " ORDER BY id LIMIT " + std::to_string(f.limit);
  for (const auto& row : exec_dead(tx, sql, f)) {
    DeadEvent d;
    d.id = row[0].as<int64_t>();
    d.type = row[1].as<std::string>();
    if (!row[2].is_null()) d.key = row[2].as<std::string>();
    d.attempts = row[3].as<int>();
    d.last_error = row[4].as<std::string>();
    d.created_at = row[5].as<std::string>();
    d.finished_at = row[6].as<std::string>();
    d.payload = row[7].as<std::string>();
    out.push_back(std::move(d));
  }
  return out;
}

int64_t retry_dead(pqxx::connection& conn, const DeadFilter& f) {
  pqxx::work tx(conn);
  const auto r = exec_dead(tx,
                           "UPDATE pgrelay.db_events SET status = 'pending', attempts = 0, next_attempt_at = now(), "
                           "finished_at = NULL WHERE " +
                               std::string(kDeadWhere),
                           f);
  tx.exec("SELECT pgrelay.wake()");
  tx.commit();
  return static_cast<int64_t>(r.affected_rows());
}

int64_t purge_dead(pqxx::connection& conn, const DeadFilter& f) {
  pqxx::work tx(conn);
  const auto r = exec_dead(tx, "DELETE FROM pgrelay.db_events WHERE " + std::string(kDeadWhere), f);
  tx.commit();
  return static_cast<int64_t>(r.affected_rows());
}

std::string set_wake_mode(pqxx::connection& conn, const std::string& mode) {
  pqxx::work tx(conn);
  auto r = tx.exec("SELECT value FROM pgrelay.settings WHERE name = 'wake'");
  const std::string before = r.empty() ? "notify" : r[0][0].as<std::string>();
  if (before != mode) {
    tx.exec_params("SELECT pgrelay.set_wake($1)", mode);
    tx.commit();
  }
  return before;
}

void report_relay(pqxx::connection& conn, const RelayInfo& r) {
  pqxx::nontransaction tx(conn);
  tx.exec_params(
      "INSERT INTO pgrelay.relays (id, wake, listen_alive, last_notification_at, in_flight, delivered) "
      "VALUES ($1, $2, $3, now() - $4 * interval '1 second', $5, $6) "
      "ON CONFLICT (id) DO UPDATE SET seen_at = now(), wake = EXCLUDED.wake, listen_alive = EXCLUDED.listen_alive, "
      "  last_notification_at = EXCLUDED.last_notification_at, in_flight = EXCLUDED.in_flight, "
      "  delivered = EXCLUDED.delivered",
      r.id, r.wake, r.listen_alive, r.last_notification_age_s, r.in_flight, r.delivered);
}

void forget_relay(pqxx::connection& conn, const std::string& id) {
  pqxx::nontransaction tx(conn);
  tx.exec_params("DELETE FROM pgrelay.relays WHERE id = $1", id);
}

}  // namespace pgrelay
