// The wal wake source over raw libpq (libpqxx 6.4 cannot speak the streaming
// replication protocol): a temporary test_decoding slot read on Boost.Asio.
#include "listen/wal_waker.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <stdexcept>

#include <boost/asio/post.hpp>
#include <libpq-fe.h>

#include "core/log.hpp"
#include "store/connection.hpp"

namespace pgrelay {

namespace {
constexpr auto kStatusTick = std::chrono::seconds(1);      // report new positions at most this often
constexpr auto kStatusInterval = std::chrono::seconds(10);  // and always this often (wal_sender_timeout is 60 s)
constexpr auto kProbeTimeout = std::chrono::seconds(3);
constexpr auto kSlowSlotWarning = std::chrono::seconds(10);

// The connection parameters of the waker; replication=database makes it a
// walsender bound to the database, which logical slots need.
constexpr const char* kParams =
    "replication=database keepalives=1 keepalives_idle=10 keepalives_interval=5 keepalives_count=3 "
    "connect_timeout=5 application_name=pgrelay-wal-waker";

// test_decoding, not pgoutput: pgoutput needs a publication, a database object
// that outlives the relay and needs CREATE rights, while test_decoding ships
// with postgresql-contrib (and on the major managed services) and prints one
// plain text line per change, which is all a wake signal needs. Its cost is
// that the walsender decodes changes of every table of the database, not just
// pgrelay.db_events; they are skipped here.
constexpr const char* kPlugin = "test_decoding";
constexpr const char* kInsertLine = "table pgrelay.db_events: INSERT:";
// pgrelay.wake() in wal mode (retry, replay, resume: updates, not inserts) writes this message.
constexpr const char* kWakeMessageLine = "message: transactional: 1 prefix: pgrelay,";

// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
constexpr int64_t kPgEpochOffsetUs = 946684800LL * 1000000LL;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

uint64_t read_be64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

void write_be64(char* p, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}

bool starts_with(const char* s, size_t n, const char* prefix) {
  const size_t len = std::strlen(prefix);
  return n >= len && std::memcmp(s, prefix, len) == 0;
}

// libpq's multi-line messages as one log-friendly line.
std::string one_line(std::string s) {
  std::string out;
  bool space = false;
  for (char ch : s) {
    if (ch == '\n' || ch == '\t' || ch == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += ch;
  }
  return out;
}

std::string error_of(PGconn* c) { return one_line(c ? PQerrorMessage(c) : "out of memory"); }

std::string wal_level_error(const std::string& level) {
  return "wake mode \"wal\" needs wal_level=logical (it is \"" + level +
         "\"); set it in postgresql.conf and restart, or use wake \"poll\"";
}

// The server refuses a walsender to a role without REPLICATION; the wording
// changed across versions.
bool is_replication_denied(const std::string& error) {
  return error.find("replication role") != std::string::npos ||
         error.find("REPLICATION attribute") != std::string::npos ||
         error.find("permission denied to start WAL sender") != std::string::npos;
}

std::string replication_denied_error(const std::string& error) {
  return "wake mode \"wal\" needs a role with the REPLICATION attribute (ALTER ROLE ... REPLICATION), "
         "or use wake \"poll\": " + error;
}

// SHOW wal_level on a connected connection; "" with `error` set if it failed.
std::string show_wal_level(PGconn* c, std::string* error) {
  PGresult* r = PQexec(c, "SHOW wal_level");
  std::string level;
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
    level = PQgetvalue(r, 0, 0);
  } else {
    *error = "SHOW wal_level failed: " + error_of(c);
  }
  PQclear(r);
  return level;
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

void WalWaker::PgConnDeleter::operator()(pg_conn* c) const { PQfinish(c); }

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
    std::unique_ptr<pg_conn, PgConnDeleter> c(PQconnectdb(with_params(conninfo_, kParams).c_str()));
    if (!c || PQstatus(c.get()) != CONNECTION_OK) {
      const std::string e = error_of(c.get());
      if (is_replication_denied(e)) throw std::runtime_error(replication_denied_error(e));
      log::warn("wal waker: cannot connect yet, will retry", {{"error", e}});
    } else {
      std::string e;
      const std::string level = show_wal_level(c.get(), &e);
      if (level.empty()) throw std::runtime_error("wake mode \"wal\": " + e);
      if (level != "logical") throw std::runtime_error(wal_level_error(level));
    }
  }
  boost::asio::post(io_, [this] { connect(); });
  thread_ = std::thread([this] {
    auto guard = boost::asio::make_work_guard(io_);
    io_.run();
  });
}

void WalWaker::stop() {
  std::lock_guard<std::mutex> lock(stop_mutex_);
  stopping_.store(true);
  if (!thread_.joinable()) return;
  boost::asio::post(io_, [this] {
    drop("stopping");
    retry_timer_.cancel();
    io_.stop();
  });
  thread_.join();
}

void WalWaker::probe() {
  boost::asio::post(io_, [this] {
    if (!streaming_ || probe_waiting_) return;
    probe_waiting_ = true;
    if (!send_status(true)) {
      drop("cannot send a keepalive request: " + error_of(conn_.get()));
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
  conn_.reset(PQconnectdb(with_params(conninfo_, kParams).c_str()));
  if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) {
    log::warn("wal waker: cannot connect, retrying", {{"error", error_of(conn_.get())}});
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
  const std::string sql = "CREATE_REPLICATION_SLOT " + slot_ + " TEMPORARY LOGICAL " + kPlugin + " NOEXPORT_SNAPSHOT";
  const int fd = ::dup(PQsocket(conn_.get()));
  if (fd < 0 || !PQsendQuery(conn_.get(), sql.c_str())) {
    if (fd >= 0) ::close(fd);
    drop("cannot create the replication slot: " + error_of(conn_.get()));
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

void WalWaker::await_slot() {
  socket_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                      [this, gen = generation_](const boost::system::error_code& ec) {
                        if (ec == boost::asio::error::operation_aborted || gen != generation_) return;
                        if (ec) {
                          drop("socket error: " + ec.message());
                          return;
                        }
                        if (!PQconsumeInput(conn_.get())) {
                          drop("cannot create the replication slot: " + error_of(conn_.get()));
                          return;
                        }
                        if (PQisBusy(conn_.get())) {
                          await_slot();
                          return;
                        }
                        std::string error;
                        while (PGresult* r = PQgetResult(conn_.get())) {
                          if (PQresultStatus(r) != PGRES_TUPLES_OK && error.empty()) {
                            error = one_line(PQresultErrorMessage(r));
                          }
                          PQclear(r);
                        }
                        if (!error.empty()) {
                          drop("cannot create the replication slot: " + error);
                          return;
                        }
                        start_streaming();
                      });
}

void WalWaker::start_streaming() {
  status_timer_.cancel();
  // Empty transactions are skipped so an idle database sends nothing.
  const std::string sql = "START_REPLICATION SLOT " + slot_ +
                          " LOGICAL 0/0 (\"skip-empty-xacts\" '1', \"include-xids\" '0')";
  PGresult* r = PQexec(conn_.get(), sql.c_str());
  const bool ok = PQresultStatus(r) == PGRES_COPY_BOTH;
  PQclear(r);
  if (!ok) {
    drop("cannot start streaming: " + error_of(conn_.get()));
    return;
  }
  if (PQsetnonblocking(conn_.get(), 1) != 0) {
    drop("cannot make the connection non-blocking: " + error_of(conn_.get()));
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

void WalWaker::arm_read() {
  socket_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                      [this, gen = generation_](const boost::system::error_code& ec) {
                        if (ec == boost::asio::error::operation_aborted || gen != generation_) return;
                        if (ec) {
                          drop("socket error: " + ec.message());
                          return;
                        }
                        on_readable();
                      });
}

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
                          drop("cannot send a status update: " + error_of(conn_.get()));
                        } else if (rc > 0) {
                          arm_write();
                        }
                      });
}

void WalWaker::on_readable() {
  if (!PQconsumeInput(conn_.get())) {
    drop("connection lost: " + error_of(conn_.get()));
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
      drop("connection lost: " + error_of(conn_.get()));
      return;
    }
    any = true;
    // XLogData: 'w', int64 start, int64 end, int64 send time, then the plugin's text.
    if (buf[0] == 'w' && n >= 25) {
      received_lsn_ = std::max({received_lsn_, read_be64(buf + 1), read_be64(buf + 9)});
      const char* text = buf + 25;
      const size_t len = static_cast<size_t>(n) - 25;
      // Wake on the COMMIT of a transaction that inserted events: one wake per
      // transaction however many rows it wrote, and only once it is committed.
      if (starts_with(text, len, kInsertLine)) {
        in_commit_wakes_ = true;
      } else if (starts_with(text, len, kWakeMessageLine)) {
        // A transactional message is decoded only once its transaction committed, and
        // skip-empty-xacts drops the BEGIN and COMMIT of one that wrote nothing else.
        wake = true;
      } else if (starts_with(text, len, "COMMIT")) {
        wake = wake || in_commit_wakes_;
        in_commit_wakes_ = false;
      } else if (starts_with(text, len, "BEGIN")) {
        in_commit_wakes_ = false;
      }
    } else if (buf[0] == 'k' && n >= 18) {
      // Primary keepalive: 'k', int64 end of WAL, int64 send time, byte reply requested.
      received_lsn_ = std::max(received_lsn_, read_be64(buf + 1));
      reply = reply || buf[17] != 0;
    }
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
    drop("cannot answer a keepalive: " + error_of(conn_.get()));
    return;
  }
  arm_read();
  if (wake && callbacks_.on_wake) callbacks_.on_wake();
}

// Standby status update: 'r', int64 written, flushed and applied positions,
// int64 client time (µs since 2000-01-01), byte reply requested. Everything
// received counts as applied: the slot is a signal, nothing is ever replayed,
// so the server may recycle the WAL behind it at once.
bool WalWaker::send_status(bool reply_requested) {
  char msg[34];
  msg[0] = 'r';
  write_be64(msg + 1, received_lsn_);
  write_be64(msg + 9, received_lsn_);
  write_be64(msg + 17, received_lsn_);
  const int64_t unix_us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  write_be64(msg + 25, static_cast<uint64_t>(unix_us - kPgEpochOffsetUs));
  msg[33] = reply_requested ? 1 : 0;
  if (PQputCopyData(conn_.get(), msg, sizeof msg) != 1) return false;
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
    const bool due = received_lsn_ > reported_lsn_ ||
                     std::chrono::steady_clock::now() - status_sent_at_ >= kStatusInterval;
    if (due && !send_status(false)) {
      drop("cannot send a status update: " + error_of(conn_.get()));
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
  in_commit_wakes_ = false;
  received_lsn_ = reported_lsn_ = 0;
  status_timer_.cancel();
  probe_timer_.cancel();
  if (socket_) {
    boost::system::error_code ignored;
    socket_->cancel(ignored);
    socket_->close(ignored);  // closes our dup, never libpq's own socket
    socket_.reset();
  }
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
