// Reading and writing the replication protocol's messages, and test_decoding's
// lines (listen/replication_codec.hpp).
#include "listen/replication_codec.hpp"

namespace pgrelay {
namespace {

constexpr std::string_view kInsertLine = "table pgrelay.db_events: INSERT:";
// pgrelay.wake() in wal mode (retry, replay, resume: updates, not inserts) writes this message.
constexpr std::string_view kWakeMessageLine = "message: transactional: 1 prefix: pgrelay,";

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

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

}  // namespace

ReplicationMessage parse_replication_message(const char* data, size_t size) {
  ReplicationMessage m;
  if (size == 0) return m;
  if (data[0] == 'w' && size >= 25) {
    m.kind = ReplicationMessage::Kind::xlog_data;
    m.wal_start = read_be64(data + 1);
    m.wal_end = read_be64(data + 9);
    m.text = std::string_view(data + 25, size - 25);
  } else if (data[0] == 'k' && size >= 18) {
    m.kind = ReplicationMessage::Kind::keepalive;
    m.wal_end = read_be64(data + 1);
    m.reply_requested = data[17] != 0;
  }
  return m;
}

std::array<char, 34> standby_status_update(uint64_t lsn, int64_t unix_us, bool reply_requested) {
  std::array<char, 34> msg{};
  msg[0] = 'r';
  write_be64(msg.data() + 1, lsn);
  write_be64(msg.data() + 9, lsn);
  write_be64(msg.data() + 17, lsn);
  write_be64(msg.data() + 25, static_cast<uint64_t>(unix_us - kPgEpochOffsetUs));
  msg[33] = reply_requested ? 1 : 0;
  return msg;
}

bool WakeDecoder::feed(std::string_view line) {
  if (starts_with(line, kInsertLine)) {
    inserted_ = true;
  } else if (starts_with(line, kWakeMessageLine)) {
    // skip-empty-xacts drops the BEGIN and COMMIT of a transaction that wrote nothing else.
    return true;
  } else if (starts_with(line, "COMMIT")) {
    const bool wake = inserted_;
    inserted_ = false;
    return wake;
  } else if (starts_with(line, "BEGIN")) {
    inserted_ = false;
  }
  return false;
}

}  // namespace pgrelay
