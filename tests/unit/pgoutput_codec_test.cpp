// pgoutput's messages and the batches built from them, on bytes recorded from
// PostgreSQL 15 with pg_logical_slot_peek_binary_changes(slot, NULL, NULL,
// 'proto_version', '1', 'publication_names', 'p', 'messages', 'true') after:
//   CREATE TABLE orders (id int PRIMARY KEY, note text, amount numeric, tags text[], meta jsonb);
//   ALTER TABLE orders REPLICA IDENTITY FULL;
//   INSERT INTO orders VALUES (1, 'a b', 12.50, '{x,y}', '{"k": [1, 2]}'), (2, NULL, 3, '{}', NULL);
//   UPDATE orders SET note = 'it''s' WHERE id = 1;  DELETE FROM orders WHERE id = 2;  TRUNCATE orders;
//   SELECT pg_logical_emit_message(true, 'pgrelay', '{"type":"orders.paid",...}');
// and, on a table docs (id int PRIMARY KEY, body text STORAGE EXTERNAL, n int) with the
// default replica identity, an update that left a TOASTed body alone and a delete.
#include <doctest/doctest.h>

#include <string>

#include <rapidjson/document.h>

#include "capture/change_batch.hpp"
#include "capture/pgoutput_codec.hpp"

using namespace pgrelay;
using Kind = PgoutputMessage::Kind;

namespace {

std::string unhex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}
PgoutputMessage parse(const std::string& hex) { return parse_pgoutput(unhex(hex)); }

// Transaction 729: the two-row insert.
const char* kBegin729 = "420000000001d443200003049fd5938e67000002d9";
const char* kRelationOrders =
    "52000040027075626c6963006f7264657273006600050169640000000017ffffffff016e6f74650000000019ffffffff01616d6f756e740000"
    "0006a4ffffffff017461677300000003f1ffffffff016d6574610000000edaffffffff";
const char* kInsert1 =
    "49000040024e00057400000001317400000003612062740000000531322e353074000000057b782c797d740000000d7b226b223a205b312c20"
    "325d7d";
const char* kInsert2 = "49000040024e00057400000001326e74000000013374000000027b7d6e";
const char* kCommit729 = "43000000000001d443200000000001d443500003049fd5938e67";
// Transaction 730: the update, 731: the delete, 732: the truncate, 733: the message.
const char* kBegin730 = "420000000001d444600003049fd593907c000002da";
const char* kUpdate =
    "55000040024f00057400000001317400000003612062740000000531322e353074000000057b782c797d740000000d7b226b223a205b312c20"
    "325d7d4e0005740000000131740000000469742773740000000531322e353074000000057b782c797d740000000d7b226b223a205b312c2032"
    "5d7d";
const char* kCommit730 = "43000000000001d444600000000001d444900003049fd593907c";
const char* kBegin731 = "420000000001d444e80003049fd5939104000002db";
const char* kDelete = "44000040024f00057400000001326e74000000013374000000027b7d6e";
const char* kCommit731 = "43000000000001d444e80000000001d445180003049fd5939104";
const char* kTruncate = "54000000010000004002";
const char* kBegin733 = "420000000001d452980003049fd59398c3000002dd";
const char* kMessage =
    "4d010000000001d45298706772656c6179000000004e7b2274797065223a226f72646572732e70616964222c227061796c6f6164223a7b226f"
    "726465725f6964223a34327d2c226b6579223a226f726465723a3432222c2268656164657273223a7b7d7d";
const char* kCommit733 = "43000000000001d452980000000001d452c80003049fd59398c3";
// docs, REPLICA IDENTITY DEFAULT: an update that left the TOASTed body alone ('u'), a key-only delete ('K').
const char* kRelationDocs =
    "520000400f7075626c696300646f6373006400030169640000000017ffffffff00626f64790000000019ffffffff006e0000000017fffffff"
    "f";
const char* kUpdateUnchangedToast = "550000400f4e000374000000013775740000000132";
const char* kDeleteKeyOnly = "440000400f4b00037400000001376e6e";

rapidjson::Document json(const std::string& text) {
  rapidjson::Document d;
  d.Parse(text.c_str());
  REQUIRE_FALSE(d.HasParseError());
  return d;
}

}  // namespace

TEST_CASE("a Begin gives the commit's LSN and the transaction id") {
  const auto m = parse(kBegin729);
  CHECK(m.kind == Kind::begin);
  CHECK(m.final_lsn == 0x1D44320);
  CHECK(m.xid == 729);
}

TEST_CASE("a Commit gives the commit's LSN and the end of its record") {
  const auto m = parse(kCommit729);
  CHECK(m.kind == Kind::commit);
  CHECK(m.commit_lsn == 0x1D44320);
  CHECK(m.end_lsn == 0x1D44350);
}

TEST_CASE("a Relation message names the table and its columns with their types") {
  const auto m = parse(kRelationOrders);
  CHECK(m.kind == Kind::relation);
  CHECK(m.relation_oid == 16386);
  CHECK(m.schema == "public");
  CHECK(m.table == "orders");
  CHECK(m.replica_identity == 'f');
  REQUIRE(m.columns.size() == 5);
  CHECK(m.columns[0].name == "id");
  CHECK(m.columns[0].type_oid == 23);
  CHECK(m.columns[0].part_of_key);
  CHECK(m.columns[2].name == "amount");
  CHECK(m.columns[2].type_oid == 1700);
  CHECK(m.columns[3].type_oid == 1009);
  CHECK(m.columns[4].name == "meta");
  CHECK(m.columns[4].type_oid == 3802);
}

TEST_CASE("an Insert gives the new row's text values and its NULLs") {
  const auto a = parse(kInsert1);
  CHECK(a.kind == Kind::insert);
  CHECK(a.relation_oid == 16386);
  REQUIRE(a.new_tuple);
  REQUIRE(a.new_tuple->size() == 5);
  CHECK((*a.new_tuple)[1].data == "a b");
  CHECK((*a.new_tuple)[2].data == "12.50");
  CHECK((*a.new_tuple)[3].data == "{x,y}");
  CHECK((*a.new_tuple)[4].data == R"({"k": [1, 2]})");
  const auto b = parse(kInsert2);
  CHECK((*b.new_tuple)[1].kind == TupleValue::Kind::null);
  CHECK((*b.new_tuple)[4].kind == TupleValue::Kind::null);
}

TEST_CASE("an Update under REPLICA IDENTITY FULL carries the whole old row and the new one") {
  const auto m = parse(kUpdate);
  CHECK(m.kind == Kind::update);
  CHECK(m.old_kind == 'O');
  REQUIRE(m.old_tuple);
  REQUIRE(m.new_tuple);
  CHECK((*m.old_tuple)[1].data == "a b");
  CHECK((*m.new_tuple)[1].data == "it's");
}

TEST_CASE("a Delete carries the old row and a Truncate the truncated relations") {
  const auto d = parse(kDelete);
  CHECK(d.kind == Kind::delete_);
  CHECK(d.old_kind == 'O');
  CHECK_FALSE(d.new_tuple);
  CHECK((*d.old_tuple)[0].data == "2");
  const auto t = parse(kTruncate);
  CHECK(t.kind == Kind::truncate);
  REQUIRE(t.truncated_oids.size() == 1);
  CHECK(t.truncated_oids[0] == 16386);
}

TEST_CASE("a transactional logical message gives its prefix and content") {
  const auto m = parse(kMessage);
  CHECK(m.kind == Kind::message);
  CHECK(m.transactional);
  CHECK(m.message_lsn == 0x1D45298);
  CHECK(m.prefix == "pgrelay");
  CHECK(m.content.substr(0, 22) == R"({"type":"orders.paid",)");
}

TEST_CASE("an unchanged TOASTed value and a key-only old row are told apart") {
  const auto u = parse(kUpdateUnchangedToast);
  CHECK_FALSE(u.old_tuple);
  CHECK((*u.new_tuple)[1].kind == TupleValue::Kind::unchanged);
  const auto d = parse(kDeleteKeyOnly);
  CHECK(d.old_kind == 'K');
  CHECK((*d.old_tuple)[0].data == "7");
  CHECK((*d.old_tuple)[1].kind == TupleValue::Kind::null);
}

TEST_CASE("a message cut short or with an unknown value kind is an error and never skipped") {
  const std::string insert = unhex(kInsert1);
  CHECK_THROWS_AS(parse_pgoutput(insert.substr(0, insert.size() - 3)), PgoutputError);
  std::string bad = unhex(kInsert2);
  bad[9] = 'x';  // the first value's kind
  CHECK_THROWS_AS(parse_pgoutput(bad), PgoutputError);
  CHECK(parse_pgoutput("Y").kind == Kind::other);  // a kind pgrelay does not read: skipped, not an error
}

TEST_CASE("LSNs print and parse as PostgreSQL writes them") {
  CHECK(format_lsn(0x1D44350) == "0/1D44350");
  CHECK(format_lsn((uint64_t{0x2A} << 32) | 0x10) == "2A/10");
  CHECK(parse_lsn("2A/10") == ((uint64_t{0x2A} << 32) | 0x10));
  CHECK(parse_lsn("0/1d44350") == 0x1D44350);
  CHECK_FALSE(parse_lsn("16B3748"));
  CHECK_FALSE(parse_lsn("0/xyz"));
}

TEST_CASE("a batch holds whole transactions in commit order with typed-back values") {
  ChangeBatch b;
  for (const char* hex : {kBegin729, kRelationOrders, kInsert1, kInsert2}) CHECK_FALSE(b.feed(parse(hex)));
  CHECK(b.in_transaction());
  CHECK(b.ready() == 0);  // nothing before its commit
  CHECK(b.feed(parse(kCommit729)));
  for (const char* hex : {kBegin730, kUpdate, kCommit730, kBegin731, kDelete, kCommit731}) b.feed(parse(hex));
  CHECK(b.ready() == 4);
  CHECK(b.transactions() == 3);
  CHECK(b.end_lsn() == 0x1D44518);
  const auto d = json(b.take());
  REQUIRE(d.IsArray());
  REQUIRE(d.Size() == 4);
  CHECK(std::string(d[0]["c"].GetString()) == "0/1D44320");
  CHECK(std::string(d[0]["op"].GetString()) == "insert");
  CHECK(d[0]["r"].GetUint() == 16386);
  CHECK(std::string(d[0]["new"]["amount"].GetString()) == "12.50");  // the server types it back
  CHECK(d[0]["new"]["meta"]["k"][1].GetInt() == 2);                  // jsonb travels as JSON
  CHECK(d[1]["new"]["note"].IsNull());
  CHECK(std::string(d[2]["op"].GetString()) == "update");
  CHECK(std::string(d[2]["old"]["note"].GetString()) == "a b");
  CHECK(std::string(d[2]["new"]["note"].GetString()) == "it's");
  CHECK(std::string(d[3]["op"].GetString()) == "delete");
  CHECK_FALSE(d[3].HasMember("new"));
  CHECK(std::string(d[3]["c"].GetString()) == "0/1D444E8");
  CHECK(b.ready() == 0);
  CHECK(b.take() == "[]");
}

TEST_CASE("emit's message becomes a change and a truncate or a wake becomes none") {
  ChangeBatch b;
  b.feed(parse(kRelationOrders));
  for (const char* hex : {kBegin733, kTruncate, kMessage, kCommit733}) b.feed(parse(hex));
  PgoutputMessage wake;
  wake.kind = Kind::message;
  wake.transactional = true;
  wake.prefix = "pgrelay";
  b.feed(parse(kBegin733));
  b.feed(wake);  // pgrelay.wake(): empty content
  b.feed(parse(kCommit733));
  CHECK(b.ready() == 1);
  CHECK(b.transactions() == 2);
  const auto d = json(b.take());
  CHECK(std::string(d[0]["op"].GetString()) == "message");
  CHECK(std::string(d[0]["m"]["type"].GetString()) == "orders.paid");
  CHECK(d[0]["m"]["payload"]["order_id"].GetInt() == 42);
}

TEST_CASE("an unchanged TOASTed value is left out when no old row can supply it") {
  ChangeBatch b;
  b.feed(parse(kRelationDocs));
  b.feed(parse(kBegin730));
  b.feed(parse(kUpdateUnchangedToast));
  b.feed(parse(kCommit730));
  const auto d = json(b.take());
  CHECK_FALSE(d[0]["new"].HasMember("body"));
  CHECK(std::string(d[0]["new"]["n"].GetString()) == "2");
}

TEST_CASE("a change of a relation the stream never described is an error") {
  ChangeBatch b;
  b.feed(parse(kBegin729));
  CHECK_THROWS_AS(b.feed(parse(kInsert1)), PgoutputError);
}

TEST_CASE("a lost stream forgets the open transaction and what was not taken") {
  ChangeBatch b;
  for (const char* hex : {kBegin729, kRelationOrders, kInsert1, kCommit729, kBegin730}) b.feed(parse(hex));
  b.reset();
  CHECK_FALSE(b.in_transaction());
  CHECK(b.ready() == 0);
  CHECK(b.take() == "[]");
}
