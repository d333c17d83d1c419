// The SQL of capture mode "wal" (triggers/25_wal_capture.sql): switching a
// database's capture mode, writing a batch of decoded changes with its position,
// and the slot's lag. Functions of one connection; no shared state.
#pragma once
#include <cstdint>
#include <string>

#include <pqxx/connection>
#include <pqxx/transaction_base>

namespace pgrelay {

// Brings the database's capture mode in line with `mode` ("trigger" or "wal");
// returns the mode it had. To "wal" it creates the slot and the publication if
// missing. Throws std::runtime_error with the server's explanation and what to do
// (wal_level not logical, no REPLICATION attribute, no right to create the publication,
// a tracked table without REPLICA IDENTITY FULL).
std::string set_capture_mode(pqxx::connection& conn, const std::string& mode);

// The capture slot's name and the end LSN its events are written up to ("0/0" at first).
struct CapturePosition {
  std::string slot;
  std::string materialized_lsn;
};
// Throws std::runtime_error when the database is not in capture mode "wal".
CapturePosition read_capture_position(pqxx::connection& conn);

// Writes the events of `changes` (capture/change_batch.hpp) and records `end_lsn`, in
// one transaction; returns how many events it wrote (transactions at or before the
// recorded position are skipped). Throws pqxx errors; pqxx::in_doubt_error when the
// connection broke during COMMIT (a retry then skips what did commit).
int64_t materialize_changes(pqxx::connection& conn, const std::string& slot, const std::string& end_lsn,
                            const std::string& changes);

// How far the capture slot is behind: WAL bytes between the server's current
// position and the slot's confirmed one, and seconds since events were last written
// from it (-1 if never). Both -1 when the database is not in capture mode "wal".
struct CaptureLag {
  std::string slot;
  bool active = false;  // a relay is reading the slot now
  int64_t lag_bytes = -1;
  double since_write_s = -1;
  int64_t events = 0;  // written from the slot so far
};
CaptureLag read_capture_lag(pqxx::transaction_base& tx);

}  // namespace pgrelay
