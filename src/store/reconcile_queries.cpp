// The end-of-run queries of `pgrelay reconcile`.
#include "store/reconcile_queries.hpp"

#include <pqxx/pqxx>

namespace pgrelay {

std::vector<ProblemGroup> problem_groups(pqxx::connection& conn) {
  pqxx::read_transaction tx(conn);
  std::vector<ProblemGroup> out;
  for (const auto& row : tx.exec("SELECT CASE WHEN status = 'dead' THEN 'dead' ELSE 'failing' END, event_type, "
                                 "       coalesce(substring(last_error FROM '^handler ([^:]+):'), '?'), count(*), "
                                 "       (array_agg(last_error ORDER BY id DESC))[1] "
                                 "  FROM pgrelay.db_events "
                                 " WHERE status = 'dead' OR (status IN ('pending', 'processing') AND last_error IS NOT "
                                 "NULL AND attempts > 0) "
                                 " GROUP BY 1, 2, 3 ORDER BY 1, 4 DESC")) {
    out.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>(),
                   row[4].is_null() ? "" : row[4].as<std::string>(), row[3].as<int64_t>()});
  }
  return out;
}

int64_t due_now(pqxx::connection& conn) {
  pqxx::read_transaction tx(conn);
  return tx
      .exec1(
          "SELECT count(*) FROM pgrelay.db_events WHERE status IN ('pending', 'processing') "
          "AND next_attempt_at <= now()")[0]
      .as<int64_t>();
}

}  // namespace pgrelay
