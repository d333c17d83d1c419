// The SQL of capture mode "wal" (store/wal_capture_queries.hpp).
#include "store/wal_capture_queries.hpp"

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include <pqxx/pqxx>

namespace pgrelay {

namespace {

// Creates the capture slot unless it exists, in a statement of its own. Inside
// pgrelay.set_capture() (PL/pgSQL), a creation that has to wait for other running
// transactions sometimes failed with "snapshot reference ... is not owned by resource
// owner TopTransaction" (PostgreSQL 15; a relay starting beside a busy database, seen in
// the test suite), and the relay exited. Such an error is tried again a few times.
void create_capture_slot(pqxx::connection& conn) {
  for (int attempt = 1;; ++attempt) {
    try {
      pqxx::nontransaction tx(conn);
      tx.exec(
          "SELECT pg_create_logical_replication_slot(pgrelay.capture_slot_name(), 'pgoutput') "
          "WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = pgrelay.capture_slot_name())");
      return;
    } catch (const pqxx::sql_error& e) {
      const bool transient = std::string(e.what()).find("is not owned by resource owner") != std::string::npos;
      if (!transient || attempt == 5) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(100 * attempt));
    }
  }
}

}  // namespace

std::string set_capture_mode(pqxx::connection& conn, const std::string& mode) {
  try {
    if (mode == "wal") {
      // Committed before the slot is created: pgoutput reads it as of each change.
      pqxx::work pub(conn);
      pub.exec("SELECT pgrelay.check_wal_capture_prerequisites()");
      pub.exec("SELECT pgrelay.ensure_capture_publication()");
      pub.commit();
      create_capture_slot(conn);
    }
    pqxx::work tx(conn);
    const std::string before = tx.exec1("SELECT pgrelay.capture_mode()")[0].as<std::string>();
    tx.exec_params("SELECT pgrelay.set_capture($1)", mode);
    tx.commit();
    return before;
  } catch (const pqxx::sql_error& e) {
    // The function's message already says what and what to do (its HINT is not in what()).
    std::string why = e.what();
    while (!why.empty() && why.back() == '\n') why.pop_back();
    throw std::runtime_error("capture \"" + mode + "\": " + why);
  }
}

CapturePosition read_capture_position(pqxx::connection& conn) {
  pqxx::read_transaction tx(conn);
  const auto r = tx.exec(
      "SELECT w.slot_name, w.materialized_lsn::text FROM pgrelay.wal_capture w "
      "WHERE w.slot_name = pgrelay.capture_slot_name() AND pgrelay.capture_mode() = 'wal'");
  if (r.empty()) throw std::runtime_error("capture \"wal\": the database is not in capture mode wal");
  return {r[0][0].as<std::string>(), r[0][1].as<std::string>()};
}

int64_t materialize_changes(pqxx::connection& conn, const std::string& slot, const std::string& end_lsn,
                            const std::string& changes) {
  pqxx::work tx(conn, "pgrelay-wal-capture");
  const int64_t written =
      tx.exec_params1("SELECT pgrelay.materialize_wal($1, $2::pg_lsn, $3::jsonb)", slot, end_lsn, changes)[0]
          .as<int64_t>();
  tx.commit();
  return written;
}

CaptureLag read_capture_lag(pqxx::transaction_base& tx) {
  const auto r = tx.exec(
      "SELECT w.slot_name, coalesce(s.active, false),"
      "       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn), -1)::bigint,"
      "       coalesce(extract(epoch FROM now() - w.materialized_at), -1)::float8, w.events"
      "  FROM pgrelay.wal_capture w LEFT JOIN pg_replication_slots s ON s.slot_name = w.slot_name"
      " WHERE pgrelay.capture_mode() = 'wal'");
  CaptureLag lag;
  if (r.empty()) return lag;
  lag.slot = r[0][0].as<std::string>();
  lag.active = r[0][1].as<bool>();
  lag.lag_bytes = r[0][2].as<int64_t>();
  lag.since_write_s = r[0][3].as<double>();
  lag.events = r[0][4].as<int64_t>();
  return lag;
}

}  // namespace pgrelay
