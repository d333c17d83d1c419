// The wal wake source over raw libpq (libpqxx 6.4 cannot speak the streaming
// replication protocol): a temporary test_decoding slot read on Boost.Asio.
#include "listen/wal_waker.hpp"

#include <unistd.h>

#include <algorithm>
#include <random>
#include <stdexcept>

#include <boost/asio/post.hpp>
#include <libpq-fe.h>

#include "core/log.hpp"
#include "listen/replication_codec.hpp"
#include "listen/replication_connection.hpp"

namespace pgrelay {

namespace {
constexpr auto kStatusTick = std::chrono::seconds(1);       // report new positions at most this often
constexpr auto kStatusInterval = std::chrono::seconds(10);  // and always this often (wal_sender_timeout is 60 s)
constexpr auto kProbeTimeout = std::chrono::seconds(3);
constexpr auto kSlowSlotWarning = std::chrono::seconds(10);

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string random_slot_name() {
  static constexpr char kHex[] = "0123456789abcdef";
  std::mt19937_64 rng(std::random_device{}());
  uint64_t bits = rng();
  std::string name = "pgrelay_wake_";
  for (int i = 0; i < 16; ++i, bits >>= 4) name += kHex[bits & 0xf];
  return name;
}
}  // namespace

WalWaker::WalWaker(std::string conninfo, Callbacks callbacks)
    : conninfo_(std::move(conninfo)),
      callbacks_(std::move(callbacks)),
      retry_timer_(io_),
      status_timer_(io_),
      probe_timer_(io_) {}

WalWaker::~WalWaker() { stop(); }

void WalWaker::start() {
  // Fail fast on what no retry can fix; a server that is down is only logged.
  {
    ReplicationConnection c = open_replication_connection(conninfo_);
    if (!c || PQstatus(c.get()) != CONNECTION_OK) {
      const std::string e = replication_error(c.get());
      if (is_replication_denied(e)) throw std::runtime_error(replication_denied_error(e));
      log::warn("wal waker: cannot connect yet, will retry", {{"error", e}});
    } else {
      std::string e;
      const std::string level = show_wal_level(c.get(), &e);
      if (level.empty()) throw std::runtime_error("wake mode \"wal\": " + e);
      if (level != "logical") throw std::runtime_error(wal_level_error(level));
    }
  }
  loop_.start([this] { connect(); });
}

void WalWaker::stop() {
  std::lock_guard<std::mutex> lock(stop_mutex_);
  stopping_.store(true);
  loop_.stop([this] {
    drop("stopping");
    retry_timer_.cancel();
  });
}

void WalWaker::probe() {
  boost::asio::post(io_, [this] {
    if (!streaming_ || probe_waiting_) return;
    probe_waiting_ = true;
    if (!send_status(true)) {
      drop("cannot send a keepalive request: " + replication_error(conn_.get()));
      return;
    }
    probe_timer_.expires_after(kProbeTimeout);
    probe_timer_.async_wait([this, gen = generation_](const boost::system::error_code& ec) {
      if (!ec && gen == generation_ && probe_waiting_) drop("no reply to a keepalive request within 3 s");
    });
  });
}

double WalWaker::last_notification_age_s() const {
  const int64_t t = last_message_ns_.load();
  if (t == 0) return -1;
  return static_cast<double>(now_ns() - t) / 1e9;
}

std::string WalWaker::slot_name() const {
  std::lock_guard<std::mutex> lock(slot_mutex_);
  return slot_shown_;
}

void WalWaker::show_slot(const std::string& name) {
  std::lock_guard<std::mutex> lock(slot_mutex_);
  slot_shown_ = name;
}

void WalWaker::connect() {
  if (stopping_.load()) return;
  ++generation_;
  conn_ = open_replication_connection(conninfo_);
  if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) {
    log::warn("wal waker: cannot connect, retrying", {{"error", replication_error(conn_.get())}});
    conn_.reset();
    retry_later();
    return;
  }
  std::string error;
  const std::string level = show_wal_level(conn_.get(), &error);
  if (level != "logical") {
    log::error("wal waker: cannot stream, retrying", {{"error", level.empty() ? error : wal_level_error(level)}});
    conn_.reset();
    retry_later();
    return;
  }
  // Creating a logical slot waits for the transactions running at that moment
  // to end, which can take long: wait for it on the socket, not in PQexec, so
  // stop() stays prompt.
  slot_ = random_slot_name();
  const std::string sql =
      "CREATE_REPLICATION_SLOT " + slot_ + " TEMPORARY LOGICAL " + kWakePlugin + " NOEXPORT_SNAPSHOT";
  const int fd = ::dup(PQsocket(conn_.get()));
  if (fd < 0 || !PQsendQuery(conn_.get(), sql.c_str())) {
    if (fd >= 0) ::close(fd);
    drop("cannot create the replication slot: " + replication_error(conn_.get()));
    return;
  }
  socket_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, fd);
  slot_requested_at_ = std::chrono::steady_clock::now();
  status_timer_.expires_after(kSlowSlotWarning);
  status_timer_.async_wait([this, gen = generation_](const boost::system::error_code& ec) {
    if (ec || gen != generation_ || streaming_) return;
    log::warn("wal waker: creating the slot waits for transactions open before it to end", {{"slot", slot_}});
  });
  await_slot();
}

void WalWaker::when_readable(void (WalWaker::*then)()) {
  socket_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                      [this, then, gen = generation_](const boost::system::error_code& ec) {
                        if (ec == boost::asio::error::operation_aborted || gen != generation_) return;
                        if (ec) {
                          drop("socket error: " + ec.message());
                          return;
                        }
                        (this->*then)();
                      });
}

void WalWaker::await_slot() { when_readable(&WalWaker::on_slot_reply); }

void WalWaker::on_slot_reply() {
  if (!PQconsumeInput(conn_.get())) {
    drop("cannot create the replication slot: " + replication_error(conn_.get()));
    return;
  }
  if (PQisBusy(conn_.get())) {
    await_slot();
    return;
  }
  std::string error;
  while (PGresult* r = PQgetResult(conn_.get())) {
    if (PQresultStatus(r) != PGRES_TUPLES_OK && error.empty()) error = one_line(PQresultErrorMessage(r));
    PQclear(r);
  }
  if (!error.empty()) {
    drop("cannot create the replication slot: " + error);
    return;
  }
  start_streaming();
}

void WalWaker::start_streaming() {
  status_timer_.cancel();
  // Empty transactions are skipped so an idle database sends nothing.
  const std::string sql =
      "START_REPLICATION SLOT " + slot_ + " LOGICAL 0/0 (\"skip-empty-xacts\" '1', \"include-xids\" '0')";
  PGresult* r = PQexec(conn_.get(), sql.c_str());
  const bool ok = PQresultStatus(r) == PGRES_COPY_BOTH;
  PQclear(r);
  if (!ok) {
    drop("cannot start streaming: " + replication_error(conn_.get()));
    return;
  }
  if (PQsetnonblocking(conn_.get(), 1) != 0) {
    drop("cannot make the connection non-blocking: " + replication_error(conn_.get()));
    return;
  }
  streaming_ = true;
  alive_.store(true);
  backoff_.reset();
  status_sent_at_ = std::chrono::steady_clock::now();
  last_message_ns_.store(now_ns());
  show_slot(slot_);
  log::info("wal waker: streaming from a temporary slot",
            {{"slot", slot_},
             {"slot_wait_ms", static_cast<int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                       std::chrono::steady_clock::now() - slot_requested_at_)
                                                       .count())}});
  schedule_status();
  arm_read();
  if (callbacks_.on_connected) callbacks_.on_connected();
}

void WalWaker::arm_read() { when_readable(&WalWaker::on_readable); }

void WalWaker::arm_write() {
  if (write_armed_) return;
  write_armed_ = true;
  socket_->async_wait(boost::asio::posix::stream_descriptor::wait_write,
                      [this, gen = generation_](const boost::system::error_code& ec) {
                        if (ec == boost::asio::error::operation_aborted || gen != generation_) return;
                        write_armed_ = false;
                        if (ec) {
                          drop("socket error: " + ec.message());
                          return;
                        }
                        const int rc = PQflush(conn_.get());
                        if (rc < 0) {
                          drop("cannot send a status update: " + replication_error(conn_.get()));
                        } else if (rc > 0) {
                          arm_write();
                        }
                      });
}

void WalWaker::on_readable() {
  if (!PQconsumeInput(conn_.get())) {
    drop("connection lost: " + replication_error(conn_.get()));
    return;
  }
  bool wake = false;
  bool reply = false;
  bool any = false;
  for (;;) {
    char* buf = nullptr;
    const int n = PQgetCopyData(conn_.get(), &buf, 1);
    if (n == 0) break;  // nothing more buffered
    if (n == -1) {      // the server ended the stream
      std::string why = "the server ended the stream";
      while (PGresult* r = PQisBusy(conn_.get()) ? nullptr : PQgetResult(conn_.get())) {
        if (PQresultStatus(r) == PGRES_FATAL_ERROR) why += ": " + one_line(PQresultErrorMessage(r));
        PQclear(r);
      }
      drop(why);
      return;
    }
    if (n < 0) {
      drop("connection lost: " + replication_error(conn_.get()));
      return;
    }
    any = true;
    const ReplicationMessage m = parse_replication_message(buf, static_cast<size_t>(n));
    received_lsn_ = std::max({received_lsn_, m.wal_start, m.wal_end});
    if (m.kind == ReplicationMessage::Kind::xlog_data && decoder_.feed(m.text)) wake = true;
    reply = reply || m.reply_requested;
    PQfreemem(buf);
  }
  if (any) {
    last_message_ns_.store(now_ns());
    if (probe_waiting_) {
      probe_waiting_ = false;
      probe_timer_.cancel();
    }
  }
  if (reply && !send_status(false)) {
    drop("cannot answer a keepalive: " + replication_error(conn_.get()));
    return;
  }
  arm_read();
  if (wake && callbacks_.on_wake) callbacks_.on_wake();
}

// Everything received counts as applied (replication_codec.hpp).
bool WalWaker::send_status(bool reply_requested) {
  const int64_t unix_us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  const auto msg = standby_status_update(received_lsn_, unix_us, reply_requested);
  if (PQputCopyData(conn_.get(), msg.data(), static_cast<int>(msg.size())) != 1) return false;
  const int rc = PQflush(conn_.get());
  if (rc < 0) return false;
  if (rc > 0) arm_write();
  reported_lsn_ = received_lsn_;
  status_sent_at_ = std::chrono::steady_clock::now();
  return true;
}

void WalWaker::schedule_status() {
  status_timer_.expires_after(kStatusTick);
  status_timer_.async_wait([this, gen = generation_](const boost::system::error_code& ec) {
    if (ec || gen != generation_ || !streaming_) return;
    const bool due =
        received_lsn_ > reported_lsn_ || std::chrono::steady_clock::now() - status_sent_at_ >= kStatusInterval;
    if (due && !send_status(false)) {
      drop("cannot send a status update: " + replication_error(conn_.get()));
      return;
    }
    schedule_status();
  });
}

void WalWaker::drop(const std::string& why) {
  const bool was_alive = alive_.exchange(false);
  ++generation_;  // handlers already queued for this connection now return
  streaming_ = false;
  write_armed_ = false;
  probe_waiting_ = false;
  decoder_.reset();
  received_lsn_ = reported_lsn_ = 0;
  status_timer_.cancel();
  probe_timer_.cancel();
  unwatch(socket_);
  conn_.reset();  // the server drops the temporary slot with the session
  show_slot("");
  if (why == "stopping" || stopping_.load()) return;
  if (was_alive) {
    log::warn("wal waker: lost the replication stream, reconnecting", {{"slot", slot_}, {"reason", why}});
  } else {
    log::warn("wal waker: cannot stream, retrying", {{"slot", slot_}, {"reason", why}});
  }
  slot_.clear();
  retry_later();
}

void WalWaker::retry_later() {
  retry_timer_.expires_after(backoff_.next());
  retry_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) connect();
  });
}

}  // namespace pgrelay
