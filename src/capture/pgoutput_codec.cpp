// Reading pgoutput's messages (capture/pgoutput_codec.hpp). The formats:
// https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
#include "capture/pgoutput_codec.hpp"

#include <cstdio>

namespace pgrelay {
namespace {

// A cursor over one message that throws when the message ends too early.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}

  uint8_t u8() { return static_cast<uint8_t>(take(1)[0]); }
  uint16_t u16() { return static_cast<uint16_t>(be(2)); }
  uint32_t u32() { return static_cast<uint32_t>(be(4)); }
  uint64_t u64() { return be(8); }
  // A NUL-terminated string.
  std::string cstring() {
    const size_t end = bytes_.find('\0', pos_);
    if (end == std::string_view::npos) fail("a string without its terminating NUL");
    std::string s(bytes_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return s;
  }
  std::string_view take(size_t n) {
    if (bytes_.size() - pos_ < n) fail("a message shorter than its fields");
    const std::string_view s = bytes_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  bool at_end() const { return pos_ == bytes_.size(); }
  [[noreturn]] void fail(const std::string& what) const {
    throw PgoutputError("pgoutput: " + what + " (message '" + std::string(1, bytes_.empty() ? '?' : bytes_[0]) + "', " +
                        std::to_string(bytes_.size()) + " bytes, at byte " + std::to_string(pos_) + ")");
  }

 private:
  uint64_t be(size_t n) {
    uint64_t v = 0;
    for (char c : take(n)) v = (v << 8) | static_cast<unsigned char>(c);
    return v;
  }

  std::string_view bytes_;
  size_t pos_ = 0;
};

Tuple read_tuple(Reader& r) {
  const uint16_t n = r.u16();
  Tuple t(n);
  for (TupleValue& v : t) {
    const char kind = static_cast<char>(r.u8());
    switch (kind) {
      case 'n': v.kind = TupleValue::Kind::null; break;
      case 'u': v.kind = TupleValue::Kind::unchanged; break;
      case 't':
      case 'b': {
        v.kind = kind == 't' ? TupleValue::Kind::text : TupleValue::Kind::binary;
        const uint32_t len = r.u32();
        v.data = std::string(r.take(len));
        break;
      }
      default: r.fail(std::string("an unknown column value kind '") + kind + "'");
    }
  }
  return t;
}

// 'K' or 'O' then a tuple, if the next byte says one follows.
void read_old_tuple(Reader& r, PgoutputMessage& m, char next) {
  m.old_kind = next;
  m.old_tuple = read_tuple(r);
}

}  // namespace

PgoutputMessage parse_pgoutput(std::string_view bytes) {
  Reader r(bytes);
  PgoutputMessage m;
  const char kind = static_cast<char>(r.u8());
  switch (kind) {
    case 'B':
      m.kind = PgoutputMessage::Kind::begin;
      m.final_lsn = r.u64();
      m.commit_time_us = static_cast<int64_t>(r.u64());
      m.xid = r.u32();
      break;
    case 'C':
      m.kind = PgoutputMessage::Kind::commit;
      r.u8();  // flags, unused
      m.commit_lsn = r.u64();
      m.end_lsn = r.u64();
      m.commit_time_us = static_cast<int64_t>(r.u64());
      break;
    case 'R': {
      m.kind = PgoutputMessage::Kind::relation;
      m.relation_oid = r.u32();
      m.schema = r.cstring();
      m.table = r.cstring();
      m.replica_identity = static_cast<char>(r.u8());
      m.columns.resize(r.u16());
      for (RelationColumn& c : m.columns) {
        c.part_of_key = (r.u8() & 1) != 0;
        c.name = r.cstring();
        c.type_oid = r.u32();
        c.type_modifier = static_cast<int32_t>(r.u32());
      }
      break;
    }
    case 'I':
      m.kind = PgoutputMessage::Kind::insert;
      m.relation_oid = r.u32();
      if (r.u8() != 'N') r.fail("an insert without its new row");
      m.new_tuple = read_tuple(r);
      break;
    case 'U': {
      m.kind = PgoutputMessage::Kind::update;
      m.relation_oid = r.u32();
      char next = static_cast<char>(r.u8());
      if (next == 'K' || next == 'O') {
        read_old_tuple(r, m, next);
        next = static_cast<char>(r.u8());
      }
      if (next != 'N') r.fail("an update without its new row");
      m.new_tuple = read_tuple(r);
      break;
    }
    case 'D': {
      m.kind = PgoutputMessage::Kind::delete_;
      m.relation_oid = r.u32();
      const char next = static_cast<char>(r.u8());
      if (next != 'K' && next != 'O') r.fail("a delete without its old row");
      read_old_tuple(r, m, next);
      break;
    }
    case 'T': {
      m.kind = PgoutputMessage::Kind::truncate;
      const uint32_t n = r.u32();
      m.truncate_options = r.u8();
      for (uint32_t i = 0; i < n; ++i) m.truncated_oids.push_back(r.u32());
      break;
    }
    case 'M': {
      m.kind = PgoutputMessage::Kind::message;
      m.transactional = (r.u8() & 1) != 0;
      m.message_lsn = r.u64();
      m.prefix = r.cstring();
      const uint32_t len = r.u32();
      m.content = std::string(r.take(len));
      break;
    }
    default: return m;  // Kind::other
  }
  if (!r.at_end()) r.fail("bytes after the end of the message");
  return m;
}

std::string format_lsn(uint64_t lsn) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%X/%X", static_cast<unsigned>(lsn >> 32), static_cast<unsigned>(lsn & 0xffffffffu));
  return buf;
}

std::optional<uint64_t> parse_lsn(std::string_view text) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == text.size()) return std::nullopt;
  auto hex = [](std::string_view s) -> std::optional<uint64_t> {
    if (s.size() > 8) return std::nullopt;
    uint64_t v = 0;
    for (char c : s) {
      int d;
      if (c >= '0' && c <= '9') {
        d = c - '0';
      } else if (c >= 'A' && c <= 'F') {
        d = c - 'A' + 10;
      } else if (c >= 'a' && c <= 'f') {
        d = c - 'a' + 10;
      } else {
        return std::nullopt;
      }
      v = (v << 4) | static_cast<uint64_t>(d);
    }
    return v;
  };
  const auto hi = hex(text.substr(0, slash));
  const auto lo = hex(text.substr(slash + 1));
  if (!hi || !lo) return std::nullopt;
  return (*hi << 32) | *lo;
}

}  // namespace pgrelay
