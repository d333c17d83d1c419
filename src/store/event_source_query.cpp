// The event source query: one row from pgrelay.settings and the database's name.
#include "store/event_source_query.hpp"

#include <pqxx/pqxx>

#include "core/log.hpp"

namespace pgrelay {

EventSource read_event_source(pqxx::connection& conn) {
  pqxx::read_transaction tx(conn);
  const pqxx::row r = tx.exec1(
      "SELECT coalesce((SELECT value FROM pgrelay.settings WHERE name = 'event_id_prefix'), ''), current_database()");
  EventSource s{r[0].as<std::string>(), r[1].as<std::string>()};
  if (s.id_prefix.empty()) {
    log::warn(
        "the database has no event_id_prefix (run `pgrelay migrate`): delivery ids are bare event ids, "
        "unique within this database only");
  } else if (!valid_id_prefix(s.id_prefix)) {
    log::warn("pgrelay.settings event_id_prefix is not 1-64 of A-Z a-z 0-9 _ -: delivery ids are bare event ids",
              {{"event_id_prefix", s.id_prefix}});
    s.id_prefix.clear();
  }
  return s;
}

}  // namespace pgrelay
