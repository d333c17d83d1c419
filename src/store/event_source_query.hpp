// Reads what deliveries say about the database they come from (core/event_source.hpp).
#pragma once
#include <pqxx/connection>

#include "core/event_source.hpp"

namespace pgrelay {

// The database's event_id_prefix (empty when migration 0005 has not run yet, or the
// stored value is not a valid prefix) and its name.
EventSource read_event_source(pqxx::connection& conn);

}  // namespace pgrelay
