// The streaming replication protocol as far as the wal waker speaks it, and the
// test_decoding output it wakes on: bytes in, messages and wake decisions out,
// standby status updates out as bytes. No I/O, no libpq; unit-tested on bytes
// (tests/unit/replication_codec_test.cpp). The waker (listen/wal_waker.hpp)
// moves the bytes.
// Pure values and functions; WakeDecoder has one owner.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace pgrelay {

// test_decoding, not pgoutput: pgoutput needs a publication, a database object
// that outlives the relay and needs CREATE rights, while test_decoding ships
// with postgresql-contrib (and on the major managed services) and prints one
// plain text line per change, which is all a wake signal needs. Its cost is
// that the walsender decodes changes of every table of the database, not just
// pgrelay.db_events; WakeDecoder skips them.
inline constexpr const char* kWakePlugin = "test_decoding";

// One CopyData message of the server's side of the stream.
struct ReplicationMessage {
  enum class Kind {
    xlog_data,  // 'w': a piece of decoded WAL
    keepalive,  // 'k': the primary keepalive
    other,      // anything else, or a message too short for its kind (ignored)
  };
  Kind kind = Kind::other;
  uint64_t wal_start = 0;        // xlog_data: the WAL position the data starts at
  uint64_t wal_end = 0;          // xlog_data and keepalive: the server's current end of WAL
  bool reply_requested = false;  // keepalive: the server wants a status update now
  std::string_view text;         // xlog_data: the plugin's output; points into the parsed bytes
};

// Reads one message: 'w' is int64 start, int64 end, int64 send time, then the
// plugin's text; 'k' is int64 end of WAL, int64 send time, byte reply requested.
ReplicationMessage parse_replication_message(const char* data, size_t size);

// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
inline constexpr int64_t kPgEpochOffsetUs = 946684800LL * 1000000LL;

// The standby status update: 'r', int64 written, flushed and applied positions,
// int64 client time (µs since 2000-01-01), byte reply requested. `lsn` is given
// as all three: the slot is a signal, nothing is ever replayed, so the server
// may recycle the WAL behind it at once. `unix_us`: the client's clock, µs
// since the Unix epoch.
std::array<char, 34> standby_status_update(uint64_t lsn, int64_t unix_us, bool reply_requested);

// Decides from test_decoding's lines when to wake the relay: on the COMMIT of a
// transaction that inserted into pgrelay.db_events (once per transaction however
// many rows it wrote, and only once it is committed), and on pgrelay.wake()'s
// transactional logical message (prefix "pgrelay"), which is decoded only after
// its transaction committed.
class WakeDecoder {
 public:
  // One line of plugin output; true if the relay should look for work now.
  bool feed(std::string_view line);
  // The stream was lost: a transaction half read is forgotten.
  void reset() { inserted_ = false; }

 private:
  bool inserted_ = false;  // the transaction being decoded inserted an event
};

}  // namespace pgrelay
