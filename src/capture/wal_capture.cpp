// Reading the capture slot and writing its events (capture/wal_capture.hpp). A
// blocking loop on its own thread: one stream at a time, nothing to multiplex.
#include "capture/wal_capture.hpp"

#include <poll.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include <libpq-fe.h>
#include <pqxx/pqxx>

#include "core/log.hpp"
#include "core/reconnect_backoff.hpp"
#include "listen/replication_codec.hpp"
#include "store/connection.hpp"
#include "store/wal_capture_queries.hpp"

namespace pgrelay {
namespace {

constexpr size_t kMaxBatchChanges = 5000;                   // a batch ends at the first commit past this many changes
constexpr int kPollMs = 200;                                // how soon stop() is noticed
constexpr int64_t kStandbyRetryMs = 1000;                   // a relay that is not decoding tries the slot this often
constexpr auto kStatusInterval = std::chrono::seconds(10);  // wal_sender_timeout is 60 s by default

int64_t unix_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool slot_in_use(const std::string& error) { return error.find("is active for PID") != std::string::npos; }

}  // namespace

WalCapture::WalCapture(std::string conninfo, std::function<void()> on_written)
    : conninfo_(std::move(conninfo)), on_written_(std::move(on_written)) {
  if (const char* d = std::getenv("PGRELAY_CAPTURE_CONFIRM_DELAY_MS")) confirm_delay_ms_ = std::atoll(d);
}

WalCapture::~WalCapture() { stop(); }

void WalCapture::start() {
  thread_ = std::thread([this] { run(); });
}

void WalCapture::stop() {
  std::lock_guard<std::mutex> lock(stop_mutex_);
  stopping_.store(true);
  if (thread_.joinable()) thread_.join();
}

void WalCapture::sleep_unless_stopped(int64_t ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!stopping_.load() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(ms, 50)));
  }
}

void WalCapture::run() {
  ReconnectBackoff backoff;
  bool said_standby = false;
  while (!stopping_.load()) {
    std::string why;
    bool standby = false;
    try {
      stream();
      if (stopping_.load()) break;
      standby = !decoding_.load();
    } catch (const std::exception& e) {
      why = e.what();
    }
    const bool was_decoding = decoding_.exchange(false);
    repl_.reset();
    batch_.reset();
    idle_lsn_ = 0;
    if (stopping_.load()) break;
    if (standby && why.empty()) {
      if (!said_standby) log::info("wal capture: another relay decodes the slot; standing by", {{"slot", slot_}});
      said_standby = true;
      sleep_unless_stopped(kStandbyRetryMs);
      continue;
    }
    said_standby = false;
    db_.reset();  // its state is unknown after an error; a batch in doubt is skipped when sent again
    log::warn(was_decoding ? "wal capture: lost the stream, reconnecting" : "wal capture: cannot decode, retrying",
              {{"slot", slot_}, {"reason", why}});
    if (was_decoding) backoff.reset();
    sleep_unless_stopped(std::chrono::duration_cast<std::chrono::milliseconds>(backoff.next()).count());
  }
}

void WalCapture::stream() {
  if (!db_) db_ = connect(conninfo_, "wal-capture");
  const CapturePosition pos = read_capture_position(*db_);
  slot_ = pos.slot;
  repl_ = open_replication_connection(conninfo_, "pgrelay-wal-capture");
  if (!repl_ || PQstatus(repl_.get()) != CONNECTION_OK) {
    throw std::runtime_error("cannot open a replication connection: " + replication_error(repl_.get()));
  }
  // From the position whose events are written: the server starts at the slot's own
  // confirmed position if that is later, and sends again what lies between if earlier.
  const std::string sql = "START_REPLICATION SLOT " + slot_ + " LOGICAL " + pos.materialized_lsn +
                          " (proto_version '1', publication_names 'pgrelay_capture', messages 'true')";
  PGresult* r = PQexec(repl_.get(), sql.c_str());
  const bool ok = PQresultStatus(r) == PGRES_COPY_BOTH;
  const std::string error = ok ? "" : one_line(PQresultErrorMessage(r));
  PQclear(r);
  if (!ok) {
    if (slot_in_use(error)) return;  // standby: decoding_ stays false
    throw std::runtime_error("cannot start streaming: " + error);
  }
  decoding_.store(true);
  confirmed_lsn_ = parse_lsn(pos.materialized_lsn).value_or(0);
  log::info("wal capture: decoding the slot", {{"slot", slot_}, {"from", pos.materialized_lsn}});
  auto status_sent = std::chrono::steady_clock::now();
  const int fd = PQsocket(repl_.get());
  while (!stopping_.load()) {
    pollfd p{fd, POLLIN, 0};
    const int n = ::poll(&p, 1, kPollMs);
    if (n < 0 && errno != EINTR) throw std::runtime_error("poll failed on the replication socket");
    std::string why;
    if (n > 0 && !read_available(&why)) throw std::runtime_error(why);
    if (batch_.transactions() > 0 && !flush_batch(&why)) throw std::runtime_error(why);
    const bool idle = batch_.transactions() == 0 && !batch_.in_transaction();
    if (idle && idle_lsn_ > confirmed_lsn_) {
      confirmed_lsn_ = idle_lsn_;  // everything before it is written, or was not ours
      reply_requested_ = true;
    }
    if (reply_requested_ || std::chrono::steady_clock::now() - status_sent >= kStatusInterval) {
      if (!send_status(confirmed_lsn_, &why)) throw std::runtime_error(why);
      reply_requested_ = false;
      status_sent = std::chrono::steady_clock::now();
    }
  }
}

bool WalCapture::read_available(std::string* why) {
  if (!PQconsumeInput(repl_.get())) {
    *why = "connection lost: " + replication_error(repl_.get());
    return false;
  }
  for (;;) {
    char* buf = nullptr;
    const int n = PQgetCopyData(repl_.get(), &buf, 1);
    if (n == 0) return true;  // nothing more buffered
    if (n == -1) {
      *why = "the server ended the stream";
      while (PGresult* r = PQgetResult(repl_.get())) {
        if (PQresultStatus(r) == PGRES_FATAL_ERROR) *why += ": " + one_line(PQresultErrorMessage(r));
        PQclear(r);
      }
      return false;
    }
    if (n < 0) {
      *why = "connection lost: " + replication_error(repl_.get());
      return false;
    }
    const ReplicationMessage m = parse_replication_message(buf, static_cast<size_t>(n));
    try {
      if (m.kind == ReplicationMessage::Kind::xlog_data) {
        const bool committed = batch_.feed(parse_pgoutput(m.text));
        if (committed && batch_.ready() >= kMaxBatchChanges && !flush_batch(why)) {
          PQfreemem(buf);
          return false;
        }
      } else if (m.kind == ReplicationMessage::Kind::keepalive) {
        // Outside a transaction everything before this position has been received.
        if (!batch_.in_transaction()) idle_lsn_ = std::max(idle_lsn_, m.wal_end);
        reply_requested_ = reply_requested_ || m.reply_requested;
      }
    } catch (...) {
      PQfreemem(buf);
      throw;
    }
    PQfreemem(buf);
  }
}

bool WalCapture::flush_batch(std::string* why) {
  const uint64_t end = batch_.end_lsn();
  const size_t changes = batch_.ready();
  const std::string json = batch_.take();
  if (changes > 0) {
    const int64_t written = materialize_changes(*db_, slot_, format_lsn(end), json);
    if (written > 0) {
      events_written_ += written;
      if (on_written_) on_written_();
    }
    // Fault tests widen the window between the commit above and the confirmation below.
    if (confirm_delay_ms_ > 0) sleep_unless_stopped(confirm_delay_ms_);
  }
  confirmed_lsn_ = std::max(confirmed_lsn_, end);
  return send_status(confirmed_lsn_, why);
}

bool WalCapture::send_status(uint64_t lsn, std::string* why) {
  const auto msg = standby_status_update(lsn, unix_us(), false);
  if (PQputCopyData(repl_.get(), msg.data(), static_cast<int>(msg.size())) != 1 || PQflush(repl_.get()) != 0) {
    *why = "cannot send a status update: " + replication_error(repl_.get());
    return false;
  }
  return true;
}

}  // namespace pgrelay
