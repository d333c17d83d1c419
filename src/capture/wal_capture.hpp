// Capture mode "wal": the relay side. Reads the database's permanent pgoutput slot,
// decodes whole transactions (capture/change_batch.hpp) and writes their events into
// pgrelay.db_events with the position they end at, in one transaction, before it
// tells the slot they are done. Runs its own thread; the public methods are thread-safe.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <pqxx/connection>

#include "capture/change_batch.hpp"
#include "listen/replication_connection.hpp"

namespace pgrelay {

// One relay of a database decodes at a time: the slot admits one reader, so every
// other relay's START_REPLICATION fails with "slot ... is active" and it tries again
// every second; when the decoding relay dies its walsender ends and the next try
// succeeds (takeover within about a second of the server noticing). Every relay,
// decoding or not, delivers the events as usual.
//
// Nothing lost, nothing written twice: a batch's events and the end LSN of its last
// transaction commit together (pgrelay.materialize_wal); only then is the LSN sent
// to the server as flushed. After a crash between the two the slot sends those
// transactions again and materialize_wal skips them. A relay that is idle past
// the last transaction reports the server's position instead, so the slot does not
// hold WAL that only other tables' changes wrote.
//
// REQUIRES: the database is in capture mode "wal" (store/wal_capture_queries.hpp,
// set_capture_mode), which created the slot and the publication.
class WalCapture {
 public:
  // `conninfo` names the database; `on_written` runs on the capture thread after
  // each batch that wrote events (the relay claims then).
  WalCapture(std::string conninfo, std::function<void()> on_written);
  ~WalCapture();  // stops
  WalCapture(const WalCapture&) = delete;
  WalCapture& operator=(const WalCapture&) = delete;

  // REQUIRES: called at most once.
  void start();
  // Ends the stream (the slot stays, for the next reader) and joins. Idempotent.
  void stop();

  // True while this relay is the one reading the slot.
  bool decoding() const { return decoding_.load(); }
  // Events this relay wrote into db_events, and batches that wrote them.
  int64_t events_written() const { return events_written_.load(); }

 private:
  void run();
  // One replication connection's life: returns when it ends (error, standby, stop).
  void stream();
  // Reads what the socket holds; false when the stream ended (why in *why).
  bool read_available(std::string* why);
  bool flush_batch(std::string* why);
  bool send_status(uint64_t lsn, std::string* why);
  void sleep_unless_stopped(int64_t ms);

  std::string conninfo_;
  std::function<void()> on_written_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> decoding_{false};
  std::atomic<int64_t> events_written_{0};
  std::mutex stop_mutex_;

  // Capture thread only.
  ReplicationConnection repl_;
  std::unique_ptr<pqxx::connection> db_;
  std::string slot_;
  ChangeBatch batch_;
  uint64_t confirmed_lsn_ = 0;  // reported to the server as flushed
  uint64_t idle_lsn_ = 0;       // a keepalive's position seen outside any transaction
  bool reply_requested_ = false;
  int64_t confirm_delay_ms_ = 0;  // PGRELAY_CAPTURE_CONFIRM_DELAY_MS: fault tests only
};

}  // namespace pgrelay
