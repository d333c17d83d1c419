// The replication protocol's messages and test_decoding's lines, on bytes
// (listen/replication_codec.hpp).
#include <doctest/doctest.h>

#include <string>

#include "listen/replication_codec.hpp"

using namespace pgrelay;
using Kind = ReplicationMessage::Kind;

namespace {
std::string be64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 7; i >= 0; --i, v >>= 8) s[static_cast<size_t>(i)] = static_cast<char>(v & 0xff);
  return s;
}
ReplicationMessage parse(const std::string& bytes) { return parse_replication_message(bytes.data(), bytes.size()); }
}  // namespace

TEST_CASE("an XLogData message gives its WAL positions and the plugin's text") {
  const std::string bytes = "w" + be64(0x16B3748) + be64(0x16B37A0) + be64(12345) + "BEGIN 742";
  const auto m = parse(bytes);
  CHECK(m.kind == Kind::xlog_data);
  CHECK(m.wal_start == 0x16B3748);
  CHECK(m.wal_end == 0x16B37A0);
  CHECK(m.text == "BEGIN 742");
  CHECK_FALSE(m.reply_requested);
}

TEST_CASE("a keepalive gives the server's end of WAL and whether it wants a reply") {
  auto m = parse("k" + be64(0xFFFFFFFF00000010ULL) + be64(99) + std::string(1, '\1'));
  CHECK(m.kind == Kind::keepalive);
  CHECK(m.wal_end == 0xFFFFFFFF00000010ULL);
  CHECK(m.wal_start == 0);
  CHECK(m.reply_requested);
  m = parse("k" + be64(7) + be64(99) + std::string(1, '\0'));
  CHECK_FALSE(m.reply_requested);
}

TEST_CASE("a message too short for its kind, or of an unknown kind, is ignored") {
  CHECK(parse("").kind == Kind::other);
  CHECK(parse("w" + be64(1) + be64(2)).kind == Kind::other);  // 17 of 25 header bytes
  CHECK(parse("k" + be64(1) + be64(2)).kind == Kind::other);  // no reply byte
  CHECK(parse("x" + be64(1) + be64(2) + be64(3)).kind == Kind::other);
  const auto empty_text = parse("w" + be64(1) + be64(2) + be64(3));  // XLogData with no text is still one
  CHECK(empty_text.kind == Kind::xlog_data);
  CHECK(empty_text.text.empty());
}

TEST_CASE("a standby status update reports one position as written, flushed and applied, in PostgreSQL's epoch") {
  const int64_t unix_us = kPgEpochOffsetUs + 0x0102030405LL;
  const auto msg = standby_status_update(0xAABBCCDD11223344ULL, unix_us, true);
  const std::string got(msg.data(), msg.size());
  CHECK(got == "r" + be64(0xAABBCCDD11223344ULL) + be64(0xAABBCCDD11223344ULL) + be64(0xAABBCCDD11223344ULL) +
                   be64(0x0102030405ULL) + std::string(1, '\1'));
  CHECK(standby_status_update(0, kPgEpochOffsetUs, false)[33] == 0);
}

TEST_CASE("the waker wakes once per committed transaction that inserted events, at its COMMIT") {
  WakeDecoder d;
  CHECK_FALSE(d.feed("BEGIN 742"));
  CHECK_FALSE(d.feed("table pgrelay.db_events: INSERT: id[bigint]:1 event_type[text]:'a'"));
  CHECK_FALSE(d.feed("table pgrelay.db_events: INSERT: id[bigint]:2 event_type[text]:'a'"));
  CHECK(d.feed("COMMIT 742"));
  CHECK_FALSE(d.feed("COMMIT 742"));  // that transaction is done
}

TEST_CASE("other tables' changes and pgrelay's own updates do not wake the relay") {
  WakeDecoder d;
  CHECK_FALSE(d.feed("BEGIN 7"));
  CHECK_FALSE(d.feed("table public.orders: INSERT: id[integer]:1"));
  CHECK_FALSE(d.feed("table pgrelay.db_events: UPDATE: id[bigint]:1 status[text]:'done'"));
  CHECK_FALSE(d.feed("COMMIT 7"));
}

TEST_CASE("pgrelay.wake()'s message wakes the relay at once, and a stream lost mid-transaction forgets it") {
  WakeDecoder d;
  CHECK(d.feed("message: transactional: 1 prefix: pgrelay, sz: 0 content:"));
  CHECK_FALSE(d.feed("message: transactional: 0 prefix: pgrelay, sz: 0 content:"));  // not transactional
  CHECK_FALSE(d.feed("message: transactional: 1 prefix: other, sz: 0 content:"));
  CHECK_FALSE(d.feed("BEGIN 9"));
  CHECK_FALSE(d.feed("table pgrelay.db_events: INSERT: id[bigint]:5"));
  d.reset();
  CHECK_FALSE(d.feed("COMMIT 9"));
  CHECK_FALSE(d.feed("BEGIN 10"));  // a new transaction starts clean as well
  CHECK_FALSE(d.feed("COMMIT 10"));
}
