// The LISTEN connection: one dedicated, transaction-free connection whose socket
// is watched by Boost.Asio, so a NOTIFY wakes the relay without polling. It
// reconnects with jittered backoff (core/reconnect_backoff.hpp), re-LISTENs, proves delivery with a
// self-notification and asks for a catch-up claim after every (re)connect.
// Runs its own thread; the public methods are thread-safe.
#pragma once
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <pqxx/connection>

#include "core/reconnect_backoff.hpp"
#include "listen/loop_thread.hpp"
#include "listen/watched_socket.hpp"

namespace pgrelay {

inline constexpr const char* kChannel = "pgrelay";

class Listener {
 public:
  struct Callbacks {
    std::function<void()> on_wake;       // a notification arrived (coalesce freely)
    std::function<void()> on_connected;  // LISTEN is (re)established and proven: run a catch-up claim
  };
  Listener(std::string conninfo, Callbacks callbacks);
  ~Listener();

  void start();
  void stop();
  // Sends a self-notification; if it does not come back in time, reconnects.
  void probe();

  bool alive() const { return alive_.load(); }
  // Seconds since the last notification of any kind, or -1 if none yet.
  double last_notification_age_s() const;

 private:
  class Receiver;
  void connect();
  void arm();
  void on_readable();
  void drop(const std::string& why);
  void retry_in(std::chrono::milliseconds wait);
  void on_notification(const std::string& payload);

  std::string conninfo_;
  Callbacks callbacks_;
  boost::asio::io_context io_;
  LoopThread loop_{io_};  // after io_, before the members its thread touches are gone (stopped in ~Listener)
  std::unique_ptr<pqxx::connection> conn_;
  std::unique_ptr<Receiver> receiver_;
  WatchedSocket socket_;  // a dup of the connection's socket
  boost::asio::steady_timer retry_timer_;
  boost::asio::steady_timer probe_timer_;
  ReconnectBackoff backoff_;
  uint64_t probe_seq_ = 0;
  uint64_t probe_waiting_ = 0;  // sequence number of the unanswered probe, 0 if none
  std::atomic<bool> alive_{false};
  std::atomic<int64_t> last_notification_ns_{0};
};

}  // namespace pgrelay
