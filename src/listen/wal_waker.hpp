// The wal wake source: reads a TEMPORARY logical replication slot purely as a
// wake signal, so producers need no NOTIFY (and no commit lock). Drop-in for
// Listener when relay.wake is "wal": same callbacks, start/stop/probe/alive.
// Runs its own thread; the public methods are thread-safe.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/reconnect_backoff.hpp"
#include "listen/listener.hpp"
#include "listen/loop_thread.hpp"
#include "listen/watched_socket.hpp"
#include "listen/replication_codec.hpp"
#include "listen/replication_connection.hpp"

namespace pgrelay {

// One replication connection (libpq, replication=database) that creates a
// temporary test_decoding slot named pgrelay_wake_<random> and streams from
// it. A committed transaction that inserted into pgrelay.db_events calls
// on_wake once (transactions read together are coalesced into one call).
// On any error or EOF it drops the connection (the server drops the slot with
// it, so a dead relay never holds WAL back), reconnects with jittered backoff
// (100 ms to 5 s, core/reconnect_backoff.hpp), creates a new slot and calls on_connected once streaming:
// changes made while disconnected are not replayed, so the relay must run a
// catch-up claim then, exactly as for Listener.
//
// Needs on the server: wal_level=logical, a free slot in max_replication_slots
// and max_wal_senders per relay, the test_decoding plugin (postgresql-contrib),
// and a role with the REPLICATION attribute (or superuser).
//
// A wake arrives once the commit is decoded from flushed WAL, which can in rare
// cases be microseconds before the commit is visible to other sessions; the
// relay's periodic claim (poll_interval_ms) covers that race.
//
// Use (in Relay::run, when config_.relay.wake == "wal"):
//   waker_ = std::make_unique<WalWaker>(url, Listener::Callbacks{[this] { wake(); }, [this] { wake(); }});
//   waker_->start();   // throws std::runtime_error on a definite misconfiguration
//   ... waker_->probe() with each periodic claim, waker_->alive() for readiness ...
//   waker_->stop();    // or just destroy it
class WalWaker {
 public:
  using Callbacks = Listener::Callbacks;

  // `conninfo` is the database's connection string, key=value or URL form,
  // without replication=...; it must name the database whose pgrelay.db_events
  // is watched (logical slots are per database).
  WalWaker(std::string conninfo, Callbacks callbacks);
  ~WalWaker();  // stops
  WalWaker(const WalWaker&) = delete;
  WalWaker& operator=(const WalWaker&) = delete;

  // Checks the server synchronously on the caller's thread, then streams in
  // the background. Throws std::runtime_error with an actionable message if
  // the server is reachable and wal_level is not logical, or the role may not
  // replicate; an unreachable server is not an error (it retries, logging).
  // REQUIRES: called at most once.
  void start();
  // Drops the connection (and with it the slot) and joins the thread. Idempotent.
  void stop();
  // Asks the server for a keepalive; if nothing arrives within 3 s, reconnects.
  void probe();

  // True while streaming from the slot.
  bool alive() const { return alive_.load(); }
  // Seconds since the last message of any kind from the server, or -1 if none yet.
  double last_notification_age_s() const;
  // The slot currently streamed from, "" while not streaming (for tests and logs).
  std::string slot_name() const;

 private:
  void connect();
  // Calls `then` once the socket turns readable on this connection (a later one
  // ignores it); a socket error drops the connection instead.
  void when_readable(void (WalWaker::*then)());
  void await_slot();
  void on_slot_reply();
  void start_streaming();
  void arm_read();
  void arm_write();
  void on_readable();
  bool send_status(bool reply_requested);
  void schedule_status();
  void drop(const std::string& why);
  void retry_later();
  void show_slot(const std::string& name);

  std::string conninfo_;
  Callbacks callbacks_;
  boost::asio::io_context io_;
  LoopThread loop_{io_};  // stopped in ~WalWaker, before the members its thread touches are gone
  ReplicationConnection conn_;
  WatchedSocket socket_;  // a dup of the connection's socket
  boost::asio::steady_timer retry_timer_;
  boost::asio::steady_timer status_timer_;
  boost::asio::steady_timer probe_timer_;
  ReconnectBackoff backoff_;
  std::chrono::steady_clock::time_point slot_requested_at_;
  std::chrono::steady_clock::time_point status_sent_at_;
  std::string slot_;
  bool streaming_ = false;
  bool write_armed_ = false;
  bool probe_waiting_ = false;
  WakeDecoder decoder_;        // test_decoding's lines -> wakes
  uint64_t received_lsn_ = 0;  // highest WAL position seen from the server
  uint64_t reported_lsn_ = 0;  // highest position confirmed in a status update
  std::atomic<bool> alive_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> last_message_ns_{0};
  uint64_t generation_ = 0;  // bumped per connection; stale handlers see a mismatch and return
  std::mutex stop_mutex_;    // serialises stop() callers around the join
  mutable std::mutex slot_mutex_;
  std::string slot_shown_;  // slot_ for other threads, under slot_mutex_
};

}  // namespace pgrelay
