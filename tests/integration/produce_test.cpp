// Producing events: emit(), capture triggers, one NOTIFY per transaction, rollback.
#include <doctest/doctest.h>

#include <pqxx/pqxx>
#include <thread>

#include "support/test_db.hpp"

using namespace pgrelay::test;

namespace {

struct Counter : pqxx::notification_receiver {
  int count = 0;
  std::vector<std::string> payloads;
  explicit Counter(pqxx::connection& c) : pqxx::notification_receiver(c, "pgrelay") {}
  void operator()(const std::string& payload, int) override {
    ++count;
    payloads.push_back(payload);
  }
};

int drain(pqxx::connection& c) {
  int n = 0;
  while (c.await_notification(0, 200000) > 0) ++n;
  return n;
}

}  // namespace

TEST_CASE("emit writes one pending row with its type, key, payload and headers") {
  TestDb db;
  const int64_t id = db.scalar(R"(SELECT pgrelay.emit('user.signed_up', '{"email": "a@b.c"}', 'user:7', '{"trace": "x1"}'))");
  auto r = db.exec("SELECT event_type, key, payload->>'email', headers->>'trace', status, attempts FROM pgrelay.db_events WHERE id = " +
                   std::to_string(id));
  REQUIRE(r.size() == 1);
  CHECK(r[0][0].as<std::string>() == "user.signed_up");
  CHECK(r[0][1].as<std::string>() == "user:7");
  CHECK(r[0][2].as<std::string>() == "a@b.c");
  CHECK(r[0][3].as<std::string>() == "x1");
  CHECK(r[0][4].as<std::string>() == "pending");
  CHECK(r[0][5].as<int>() == 0);
}

TEST_CASE("a transaction that writes many events sends exactly one notification") {
  TestDb db;
  auto listener = db.connect();
  Counter counter(*listener);
  {
    auto c = db.connect();
    pqxx::work tx(*c);
    for (int i = 0; i < 50; ++i) tx.exec("SELECT pgrelay.emit('a.b', '{}')");
    tx.exec("CREATE TABLE t (id int PRIMARY KEY, v text)");
    tx.exec("SELECT pgrelay.track('t')");
    tx.exec("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 20) g");
    tx.commit();
  }
  drain(*listener);
  CHECK(counter.count == 1);
  CHECK(counter.payloads == std::vector<std::string>{""});
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 70);
}

TEST_CASE("a rolled-back transaction leaves no event and sends no notification") {
  TestDb db;
  auto listener = db.connect();
  Counter counter(*listener);
  db.exec("CREATE TABLE t (id int PRIMARY KEY); SELECT pgrelay.track('t')");
  {
    auto c = db.connect();
    pqxx::work tx(*c);
    tx.exec("SELECT pgrelay.emit('a.b', '{}')");
    tx.exec("INSERT INTO t VALUES (1)");
    tx.abort();
  }
  {
    auto c = db.connect();
    pqxx::work tx(*c);
    tx.exec("SAVEPOINT s");
    tx.exec("SELECT pgrelay.emit('a.b', '{}')");
    tx.exec("ROLLBACK TO SAVEPOINT s");
    tx.exec("SELECT pgrelay.emit('kept', '{}')");
    tx.commit();
  }
  drain(*listener);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE event_type = 'a.b'") == 0);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE event_type = 'kept'") == 1);
  CHECK(db.scalar("SELECT count(*) FROM t") == 0);
  CHECK(counter.count == 1);  // only the committed transaction notified
}

TEST_CASE("emit and tracked inserts notify in notify mode only, and poll and wal producers send nothing") {
  TestDb db;
  db.exec("CREATE TABLE t (id int PRIMARY KEY); SELECT pgrelay.track('t')");
  auto listener = db.connect();
  Counter counter(*listener);
  int next_id = 0;
  for (const std::string mode : {"poll", "wal", "notify", "poll"}) {
    CAPTURE(mode);
    db.exec("SELECT pgrelay.set_wake('" + mode + "')");
    drain(*listener);
    counter.count = 0;
    db.exec("SELECT pgrelay.emit('a.b', '{}')");
    db.exec("INSERT INTO t VALUES (" + std::to_string(++next_id) + ")");
    drain(*listener);
    CHECK(counter.count == (mode == "notify" ? 2 : 0));
  }
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 8);
}

TEST_CASE("setting the wake mode it already has does not wait for open producer transactions") {
  TestDb db;
  db.exec("SELECT pgrelay.set_wake('notify')");
  auto producer = db.connect();
  pqxx::work open_tx(*producer);
  open_tx.exec("SELECT pgrelay.emit('a.b', '{}')");  // holds a lock on db_events until it ends
  auto admin = db.connect();
  pqxx::work tx(*admin);
  tx.exec("SET LOCAL lock_timeout = '1s'");
  CHECK_NOTHROW(tx.exec("SELECT pgrelay.set_wake('notify')"));
  tx.commit();
  open_tx.commit();
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 1);
}

TEST_CASE("capture triggers record the operation, the rows and the changed columns") {
  TestDb db;
  db.exec("CREATE TABLE orders (id int PRIMARY KEY, total int, note text)");
  db.exec("SELECT pgrelay.track('orders')");
  db.exec("INSERT INTO orders VALUES (1, 10, 'a')");
  db.exec("UPDATE orders SET total = 11 WHERE id = 1");
  db.exec("UPDATE orders SET total = 11 WHERE id = 1");  // changes nothing: no event
  db.exec("DELETE FROM orders WHERE id = 1");
  auto r = db.exec(
      "SELECT event_type, key, payload->>'op', payload->'new'->>'total', payload->'old'->>'total', "
      "payload->>'changed', payload->>'table', payload->>'schema' FROM pgrelay.db_events ORDER BY id");
  REQUIRE(r.size() == 3);
  CHECK(r[0][0].as<std::string>() == "orders.insert");
  CHECK(r[0][1].as<std::string>() == "orders:1");
  CHECK(r[0][3].as<std::string>() == "10");
  CHECK(r[0][4].is_null());
  CHECK(r[1][0].as<std::string>() == "orders.update");
  CHECK(r[1][3].as<std::string>() == "11");
  CHECK(r[1][4].as<std::string>() == "10");
  CHECK(r[1][5].as<std::string>() == "[\"total\"]");
  CHECK(r[2][0].as<std::string>() == "orders.delete");
  CHECK(r[2][3].is_null());
  CHECK(r[2][4].as<std::string>() == "11");
  CHECK(r[2][6].as<std::string>() == "orders");
  CHECK(r[2][7].as<std::string>() == "public");
}

TEST_CASE("track options choose key columns, captured columns, operations and prefix") {
  TestDb db;
  db.exec("CREATE TABLE acct (id int PRIMARY KEY, tenant text, secret text, balance int, touched_at int)");
  db.exec("SELECT pgrelay.track('acct', key_columns => '{tenant,id}', exclude_columns => '{secret,touched_at}', "
          "operations => '{insert,update}', event_prefix => 'bank.acct')");
  db.exec("INSERT INTO acct VALUES (1, 'acme', 's3cr3t', 5, 0)");
  db.exec("UPDATE acct SET touched_at = 1, secret = 'new' WHERE id = 1");  // only excluded columns: no event
  db.exec("UPDATE acct SET balance = 6 WHERE id = 1");
  db.exec("DELETE FROM acct");  // not tracked
  auto r = db.exec("SELECT event_type, key, payload::text FROM pgrelay.db_events ORDER BY id");
  REQUIRE(r.size() == 2);
  CHECK(r[0][0].as<std::string>() == "bank.acct.insert");
  CHECK(r[0][1].as<std::string>() == "acct:acme:1");
  CHECK(r[0][2].as<std::string>().find("s3cr3t") == std::string::npos);
  CHECK(r[0][2].as<std::string>().find("touched_at") == std::string::npos);
  CHECK(r[1][0].as<std::string>() == "bank.acct.update");

  db.exec("SELECT pgrelay.track('acct', include_columns => '{balance}', key_columns => '{}')");
  db.exec("INSERT INTO acct VALUES (2, 'acme', 'x', 9, 0)");
  auto r2 = db.exec("SELECT key, payload->'new'::text FROM pgrelay.db_events ORDER BY id DESC LIMIT 1");
  CHECK(r2[0][0].is_null());
  CHECK(r2[0][1].as<std::string>() == "{\"balance\": 9}");

  CHECK(db.scalar("SELECT pgrelay.untrack('acct')::int") == 1);
  db.exec("INSERT INTO acct VALUES (3, 'acme', 'x', 9, 0)");
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 3);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.tracked_tables") == 0);
}

TEST_CASE("hostile identifiers are quoted, never executed") {
  TestDb db;
  db.exec(R"(CREATE TABLE "Weird ""Name""; DROP TABLE x" (id int PRIMARY KEY, "col; drop" text))");
  db.exec(R"(CREATE TABLE x (id int))");
  db.exec(R"(SELECT pgrelay.track('"Weird ""Name""; DROP TABLE x"', key_columns => '{"col; drop"}'))");
  db.exec(R"(INSERT INTO "Weird ""Name""; DROP TABLE x" VALUES (1, 'v'))");
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 1);
  CHECK(db.scalar("SELECT count(*) FROM pg_class WHERE relname = 'x'") == 1);
  CHECK_THROWS_WITH_AS(db.exec("SELECT pgrelay.track('x; DROP TABLE x')"), doctest::Contains("x; DROP TABLE x"),
                       pqxx::sql_error);
  CHECK_THROWS_WITH_AS(db.exec("SELECT pgrelay.track('x', key_columns => '{\"nope); drop table x; --\"}')"),
                       doctest::Contains("has no column"), pqxx::sql_error);
  CHECK_THROWS_WITH_AS(db.exec("SELECT pgrelay.track('x', event_prefix => 'a''; drop')"),
                       doctest::Contains("event prefix"), pqxx::sql_error);
  CHECK_THROWS_WITH_AS(db.exec("SELECT pgrelay.emit('x''); DROP TABLE x; --', '{}')"), doctest::Contains("db_events_type_valid"),
                       pqxx::sql_error);
  CHECK(db.scalar("SELECT count(*) FROM pg_class WHERE relname = 'x'") == 1);
}

TEST_CASE("emit rejects payloads that are not JSON objects with a clear error") {
  TestDb db;
  CHECK_THROWS_WITH_AS(db.exec("SELECT pgrelay.emit('a', '[1,2]')"), doctest::Contains("payload must be a JSON object, got array"),
                       pqxx::sql_error);
  CHECK_THROWS_WITH_AS(db.exec("SELECT pgrelay.emit('a', NULL)"), doctest::Contains("got NULL"), pqxx::sql_error);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0);
}

TEST_CASE("producers of one key are serialised so ids follow commit order") {
  TestDb db;
  auto c1 = db.connect();
  auto c2 = db.connect();
  pqxx::work t1(*c1);
  t1.exec("SELECT pgrelay.emit('k.a', '{\"n\": 1}', 'order:1')");
  std::thread other([&] {
    pqxx::work t2(*c2);
    t2.exec("SELECT pgrelay.emit('k.a', '{\"n\": 2}', 'order:1')");  // waits for t1
    t2.commit();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0);  // neither visible yet
  t1.commit();
  other.join();
  auto r = db.exec("SELECT payload->>'n' FROM pgrelay.db_events ORDER BY id");
  REQUIRE(r.size() == 2);
  CHECK(r[0][0].as<std::string>() == "1");
  CHECK(r[1][0].as<std::string>() == "2");
}

TEST_CASE("a capture key made of the primary key takes no key lock, other keys do") {
  TestDb db;
  db.exec("CREATE TABLE a (id int PRIMARY KEY, tenant text); SELECT pgrelay.track('a');");
  db.exec("CREATE TABLE b (id int PRIMARY KEY, tenant text); SELECT pgrelay.track('b', key_columns => '{tenant}');");
  auto advisory_locks_after = [&](const std::string& insert) {
    auto c = db.connect();
    pqxx::work tx(*c);
    tx.exec(insert);
    const int64_t n = tx.exec("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")[0][0]
                          .as<int64_t>();
    tx.commit();
    return n;
  };
  CHECK(advisory_locks_after("INSERT INTO a VALUES (1, 'x')") == 0);  // the row itself orders its producers
  CHECK(advisory_locks_after("INSERT INTO b VALUES (1, 'x')") == 1);
  auto keys = db.exec("SELECT key FROM pgrelay.db_events ORDER BY id");
  CHECK(keys[0][0].as<std::string>() == "a:1");
  CHECK(keys[1][0].as<std::string>() == "b:x");
}
