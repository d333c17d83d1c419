// Receipt queries: one statement each, every value a parameter.
#include "store/receipt_queries.hpp"

#include <pqxx/pqxx>

namespace pgrelay {
namespace {

std::string id_literal(const std::vector<int64_t>& ids) {
  std::string out = "{";
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? "," : "") + std::to_string(ids[i]);
  return out + "}";
}

constexpr const char* kHistorySql = R"sql(
SELECT (pgrelay.event_state($1) || jsonb_build_object(
         'payload', (SELECT e.payload FROM pgrelay.db_events e WHERE e.id = $1),
         'headers', (SELECT e.headers FROM pgrelay.db_events e WHERE e.id = $1),
         'attempt_log', coalesce((
           SELECT jsonb_agg(jsonb_build_object(
                    'handler', a.handler, 'attempt', a.attempt, 'relay', a.relay_id, 'started_at', a.started_at,
                    'duration_ms', round(a.duration_ms::numeric, 3), 'outcome', a.outcome,
                    'http_status', a.http_status, 'exit_code', a.exit_code, 'error', a.error,
                    'response_head', a.response_head) ORDER BY a.started_at, a.attempt, a.handler)
             FROM pgrelay.attempts_of($1) a), '[]')))::text
)sql";

// The dead-letter filter's clauses ($1..$5, as admin_queries.cpp's), for any status ($6).
constexpr const char* kListSql = R"sql(
SELECT id, event_type, key, status::text, attempts, coalesce(last_error, ''), created_at::text
  FROM pgrelay.db_events
 WHERE (cardinality($1::bigint[]) = 0 OR id = ANY ($1::bigint[]))
   AND ($2::text IS NULL OR event_type = $2 OR (right($2, 2) = '.*' AND starts_with(event_type, left($2, -1))))
   AND ($3::text IS NULL OR key = $3)
   AND ($4::bigint IS NULL OR coalesce(finished_at, created_at) <= now() - $4 * interval '1 second')
   AND ($5::text IS NULL OR strpos(last_error, $5) > 0)
   AND ($6::text IS NULL OR status = $6)
 ORDER BY id
 LIMIT $7
)sql";

void require_text_field(const std::optional<std::string>& s, const char* what) {
  if (!s) return;
  const std::string problem = text_problem(*s);
  if (!problem.empty()) throw InvalidText(std::string(what) + " " + problem);
}

}  // namespace

std::string event_state_json(pqxx::connection& conn, int64_t id) {
  pqxx::read_transaction tx(conn);
  return tx.exec_params1("SELECT pgrelay.event_state($1)::text", id)[0].as<std::string>();
}

std::vector<std::pair<int64_t, std::string>> event_statuses(pqxx::connection& conn, const std::vector<int64_t>& ids) {
  pqxx::read_transaction tx(conn);
  std::vector<std::pair<int64_t, std::string>> out;
  for (const auto& row : tx.exec_params("SELECT u.id, pgrelay.event_state(u.id) ->> 'status' "
                                        "FROM unnest($1::bigint[]) WITH ORDINALITY AS u(id, n) ORDER BY u.n",
                                        id_literal(ids))) {
    out.emplace_back(row[0].as<int64_t>(), row[1].as<std::string>());
  }
  return out;
}

std::string event_history_json(pqxx::connection& conn, int64_t id) {
  pqxx::read_transaction tx(conn);
  return tx.exec_params1(kHistorySql, id)[0].as<std::string>();
}

std::vector<EventRow> list_events(pqxx::connection& conn, const DeadFilter& f,
                                  const std::optional<std::string>& status) {
  require_text_field(f.type, "the event filter's type");
  require_text_field(f.key, "the event filter's key");
  require_text_field(f.error_contains, "the event filter's error text");
  require_text_field(status, "the event filter's status");
  pqxx::read_transaction tx(conn);
  std::vector<EventRow> out;
  for (const auto& row :
       tx.exec_params(kListSql, id_literal(f.ids), f.type, f.key, f.older_than_s, f.error_contains, status, f.limit)) {
    EventRow e;
    e.id = row[0].as<int64_t>();
    e.type = row[1].as<std::string>();
    if (!row[2].is_null()) e.key = row[2].as<std::string>();
    e.status = row[3].as<std::string>();
    e.attempts = row[4].as<int>();
    e.last_error = row[5].as<std::string>();
    e.created_at = row[6].as<std::string>();
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace pgrelay
