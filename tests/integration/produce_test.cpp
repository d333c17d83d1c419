// Producing events: emit(), capture triggers, one NOTIFY per transaction, rollback.
#include <doctest/doctest.h>

#include <pqxx/pqxx>
#include <atomic>
#include <thread>

#include "store/migrate.hpp"
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

// The capture triggers on a table, as "name:row" or "name:statement", in name order.
std::string capture_triggers(const TestDb& db, const std::string& table) {
  return db
      .exec(
          "SELECT coalesce(string_agg(tgname || CASE WHEN tgtype & 1 = 1 THEN ':row' ELSE ':statement' END, ' ' "
          "ORDER BY tgname), '') FROM pg_trigger WHERE tgrelid = '" +
          table + "'::regclass AND NOT tgisinternal")[0][0]
      .as<std::string>();
}

int drain(pqxx::connection& c) {
  int n = 0;
  while (c.await_notification(0, 200000) > 0) ++n;
  return n;
}

}  // namespace

TEST_CASE("emit writes one pending row with its type, key, payload and headers") {
  TestDb db;
  const int64_t id =
      db.scalar(R"(SELECT pgrelay.emit('user.signed_up', '{"email": "a@b.c"}', 'user:7', '{"trace": "x1"}'))");
  auto r = db.exec(
      "SELECT event_type, key, payload->>'email', headers->>'trace', status, attempts FROM pgrelay.db_events WHERE id "
      "= " +
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
  db.exec(
      "SELECT pgrelay.track('acct', key_columns => '{tenant,id}', exclude_columns => '{secret,touched_at}', "
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
  CHECK_THROWS_WITH_AS(db.exec("SELECT pgrelay.emit('x''); DROP TABLE x; --', '{}')"),
                       doctest::Contains("db_events_type_valid"), pqxx::sql_error);
  CHECK(db.scalar("SELECT count(*) FROM pg_class WHERE relname = 'x'") == 1);
}

TEST_CASE("emit rejects payloads that are not JSON objects with a clear error") {
  TestDb db;
  CHECK_THROWS_WITH_AS(db.exec("SELECT pgrelay.emit('a', '[1,2]')"),
                       doctest::Contains("payload must be a JSON object, got array"), pqxx::sql_error);
  CHECK_THROWS_WITH_AS(db.exec("SELECT pgrelay.emit('a', NULL)"), doctest::Contains("got NULL"), pqxx::sql_error);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0);
}

// Whether backend `pid` is blocked on a lock, or `done` says it has finished:
// waits until one of the two holds (a producer that does not wait finishes at once).
static bool blocked_on_a_lock(const TestDb& db, int pid, const std::atomic<bool>& done) {
  const std::string waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid = " + std::to_string(pid);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < until) {
    if (done.load()) return false;
    if (db.scalar(waiting) > 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

TEST_CASE("producers of one key are serialised so ids follow commit order") {
  TestDb db;
  auto c1 = db.connect();
  auto c2 = db.connect();
  pqxx::work t1(*c1);
  t1.exec("SELECT pgrelay.emit('k.a', '{\"n\": 1}', 'order:1')");
  std::atomic<bool> second_done{false};
  std::thread other([&] {
    pqxx::work t2(*c2);
    t2.exec("SELECT pgrelay.emit('k.a', '{\"n\": 2}', 'order:1')");  // waits for t1
    t2.commit();
    second_done = true;
  });
  // Without the key's lock the second producer would commit first, while the
  // first still holds a smaller id: a relay could deliver 2 before 1 exists.
  CHECK(blocked_on_a_lock(db, c2->backendpid(), second_done));
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0);  // neither visible yet
  // Another key does not wait.
  CHECK(db.scalar("SELECT pgrelay.emit('k.a', '{\"n\": 3}', 'order:2')") > 0);
  t1.commit();
  other.join();
  auto r = db.exec("SELECT payload->>'n' FROM pgrelay.db_events WHERE key = 'order:1' ORDER BY id");
  REQUIRE(r.size() == 2);
  CHECK(r[0][0].as<std::string>() == "1");
  CHECK(r[1][0].as<std::string>() == "2");
}

TEST_CASE(
    "every keyed producer takes its key's lock (capture by primary key or other columns, and emit), an unkeyed one "
    "none") {
  TestDb db;
  db.exec("CREATE TABLE a (id int PRIMARY KEY, tenant text); SELECT pgrelay.track('a');");
  db.exec("CREATE TABLE b (id int PRIMARY KEY, tenant text); SELECT pgrelay.track('b', key_columns => '{tenant}');");
  auto advisory_locks_after = [&](const std::string& insert) {
    auto c = db.connect();
    pqxx::work tx(*c);
    tx.exec(insert);
    const int64_t n =
        tx.exec("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")[0][0]
            .as<int64_t>();
    tx.commit();
    return n;
  };
  // The row lock orders one row's writers, but not an emit() of the same key string.
  CHECK(advisory_locks_after("INSERT INTO a VALUES (1, 'x')") == 1);
  CHECK(advisory_locks_after("INSERT INTO b VALUES (1, 'x')") == 1);
  CHECK(advisory_locks_after("SELECT pgrelay.emit('e', '{}')") == 0);  // no key, nothing to order
  CHECK(advisory_locks_after("SELECT pgrelay.emit('e', '{}', 'k')") == 1);
  auto keys = db.exec("SELECT key FROM pgrelay.db_events ORDER BY id");
  CHECK(keys[0][0].as<std::string>() == "a:1");
  CHECK(keys[1][0].as<std::string>() == "b:x");
}

TEST_CASE("a bulk insert or delete on a tracked table writes one event per row, in row order, as single rows do") {
  TestDb db;
  db.exec("CREATE TABLE orders (id int PRIMARY KEY, total int)");
  db.exec("CREATE TABLE lines (order_id int, n int, qty int, PRIMARY KEY (order_id, n))");
  db.exec("SELECT pgrelay.track('orders'); SELECT pgrelay.track('lines', exclude_columns => '{qty}')");
  db.exec("INSERT INTO orders SELECT g, g * 10 FROM generate_series(1, 500) g");
  db.exec("INSERT INTO orders VALUES (501, 5010)");
  db.exec("DELETE FROM orders WHERE id IN (7, 8)");
  db.exec("INSERT INTO lines VALUES (1, 1, 5), (1, 2, 6)");  // a composite key and excluded columns: the general path
  auto r = db.exec(
      "SELECT event_type, key, payload->>'op', payload->'new'->>'total', payload->'old'->>'total', "
      "payload ? 'changed' AND payload->'changed' = 'null', payload->>'table' FROM pgrelay.db_events ORDER BY id");
  REQUIRE(r.size() == 505);
  for (int i = 0; i < 501; ++i) {
    CAPTURE(i);
    CHECK(r[i][0].as<std::string>() == "orders.insert");
    CHECK(r[i][1].as<std::string>() == "orders:" + std::to_string(i + 1));  // the statement's row order
    CHECK(r[i][3].as<std::string>() == std::to_string((i + 1) * 10));
    CHECK(r[i][4].is_null());
    CHECK(r[i][5].as<bool>());
  }
  CHECK(r[501][0].as<std::string>() == "orders.delete");
  CHECK(r[501][1].as<std::string>() == "orders:7");
  CHECK(r[501][3].is_null());
  CHECK(r[501][4].as<std::string>() == "70");
  CHECK(r[502][1].as<std::string>() == "orders:8");
  CHECK(r[503][1].as<std::string>() == "lines:1:1");
  CHECK(r[504][1].as<std::string>() == "lines:1:2");
  CHECK(db.exec("SELECT payload->>'new' FROM pgrelay.db_events WHERE key = 'lines:1:2'")[0][0].as<std::string>() ==
        "{\"n\": 2, \"order_id\": 1}");
}

TEST_CASE("track captures inserts and deletes per statement where it can, and per row where it must") {
  TestDb db;
  db.exec("CREATE TABLE a (id int PRIMARY KEY, tenant text)");
  db.exec("SELECT pgrelay.track('a')");
  CHECK(capture_triggers(db, "a") ==
        "pgrelay_capture:row pgrelay_capture_delete:statement pgrelay_capture_insert:statement");
  db.exec("SELECT pgrelay.track('a', operations => '{insert}')");
  CHECK(capture_triggers(db, "a") == "pgrelay_capture_insert:statement");
  // A key that is not the primary key takes a key lock per row before that row's event.
  db.exec("SELECT pgrelay.track('a', key_columns => '{tenant}')");
  CHECK(capture_triggers(db, "a") == "pgrelay_capture:row");

  // A partition cannot have transition tables, and its rows arrive through the parent's statements.
  db.exec("CREATE TABLE p (id int, at int, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)");
  db.exec("CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100)");
  db.exec("SELECT pgrelay.track('p1')");
  CHECK(capture_triggers(db, "p1") == "pgrelay_capture:row");
  db.exec("INSERT INTO p VALUES (1, 5), (2, 6)");
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE event_type = 'p1.insert'") == 2);
  db.exec("SELECT pgrelay.untrack('p1'); SELECT pgrelay.track('p')");
  CHECK(capture_triggers(db, "p") ==
        "pgrelay_capture:row pgrelay_capture_delete:statement pgrelay_capture_insert:statement");
  db.exec("INSERT INTO p VALUES (3, 7), (4, 8)");
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE event_type = 'p.insert'") == 2);
}

TEST_CASE(
    "re-applying the capture functions gives tables tracked with a row trigger for every operation the new triggers") {
  TestDb db;
  db.exec("CREATE TABLE old_style (id int PRIMARY KEY, v int)");
  db.exec("SELECT pgrelay.track('old_style', exclude_columns => '{v}')");
  db.exec("UPDATE pgrelay.tracked_tables SET tracked_at = '2020-01-01'");
  // What track() installed before inserts and deletes were captured per statement.
  db.exec(
      "DROP TRIGGER pgrelay_capture ON old_style; DROP TRIGGER pgrelay_capture_insert ON old_style; "
      "DROP TRIGGER pgrelay_capture_delete ON old_style; "
      "CREATE TRIGGER pgrelay_capture AFTER INSERT OR UPDATE OR DELETE ON old_style FOR EACH ROW "
      "EXECUTE FUNCTION pgrelay.capture('old_style', '{id}', '', '{v}', 'pk')");
  db.exec("CREATE TABLE gone (id int PRIMARY KEY); SELECT pgrelay.track('gone'); DROP TABLE gone");  // a stale entry
  // One that cannot be tracked again: a column it captures was dropped since.
  db.exec(
      "CREATE TABLE broken (id int PRIMARY KEY, v int); SELECT pgrelay.track('broken', include_columns => '{v}'); "
      "DROP TRIGGER pgrelay_capture_insert ON broken; DROP TRIGGER pgrelay_capture_delete ON broken; "
      "ALTER TABLE broken DROP COLUMN v");
  // One whose key is not its primary key: per row already, so it is left alone.
  db.exec(
      "CREATE TABLE by_tenant (id int PRIMARY KEY, tenant text); "
      "SELECT pgrelay.track('by_tenant', key_columns => '{tenant}')");
  const std::string by_tenant_trigger =
      "SELECT oid FROM pg_trigger WHERE tgrelid = 'by_tenant'::regclass AND tgname = 'pgrelay_capture'";
  const int64_t by_tenant_before = db.scalar(by_tenant_trigger);
  std::string capture_sql;
  for (const auto& f : pgrelay::embedded_sql())
    if (std::string(f.name).find("20_capture") != std::string::npos) capture_sql = f.sql;
  REQUIRE(!capture_sql.empty());
  capture_sql += "\n-- changed, so migrate applies it again\n";
  auto conn = db.connect();
  const auto report = pgrelay::migrate(
      *conn, {pgrelay::SqlFile{pgrelay::SqlFile::Kind::repeatable, "20_capture.sql", capture_sql.c_str()}});
  CHECK(report.applied.size() == 1);
  REQUIRE(report.warnings.size() == 1);
  CHECK(report.warnings[0].find("broken keeps its earlier capture trigger") != std::string::npos);
  CHECK(capture_triggers(db, "broken") == "pgrelay_capture:row");
  CHECK(db.scalar(by_tenant_trigger) == by_tenant_before);
  CHECK(capture_triggers(db, "old_style") ==
        "pgrelay_capture:row pgrelay_capture_delete:statement pgrelay_capture_insert:statement");
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.tracked_tables WHERE tracked_at = '2020-01-01' "
                  "AND exclude_columns = '{v}'") == 1);
  db.exec("INSERT INTO old_style VALUES (1, 2)");
  CHECK(db.exec("SELECT payload->>'new' FROM pgrelay.db_events")[0][0].as<std::string>() == "{\"id\": 1}");
}

// Commits `first` (which already wrote its event and holds the key), while `second`
// runs on another connection: `second` must wait for it, so ids follow commit order.
static void second_producer_waits_for_the_first(const TestDb& db, const std::string& first, const std::string& second) {
  auto c1 = db.connect();
  auto c2 = db.connect();
  pqxx::work t1(*c1);
  t1.exec(first);
  std::atomic<bool> second_done{false};
  std::thread other([&] {
    pqxx::work t2(*c2);
    t2.exec(second);
    second_done = true;
    t2.commit();
  });
  CHECK(blocked_on_a_lock(db, c2->backendpid(), second_done));  // waiting for the key
  t1.commit();
  other.join();
}

TEST_CASE("an emit and a capture of one key, by primary key or other columns, commit in id order") {
  TestDb db;
  db.exec(
      "CREATE TABLE acct (id int PRIMARY KEY, owner text, balance int); SELECT pgrelay.track('acct');"
      "CREATE TABLE card (id int PRIMARY KEY, acct text, label text); "
      "SELECT pgrelay.track('card', key_columns => '{acct}');"
      "INSERT INTO acct VALUES (1, 'ann', 0); INSERT INTO card VALUES (7, '1', 'a');"
      "DELETE FROM pgrelay.db_events");
  // emit first, then an update of the tracked row with the same key (primary key).
  second_producer_waits_for_the_first(db, "SELECT pgrelay.emit('acct.note', '{}', 'acct:1')",
                                      "UPDATE acct SET balance = 5 WHERE id = 1");
  // the tracked row first, then an emit.
  second_producer_waits_for_the_first(db, "UPDATE acct SET balance = 6 WHERE id = 1",
                                      "SELECT pgrelay.emit('acct.note', '{}', 'acct:1')");
  // a table keyed by another column, then an emit of that key.
  second_producer_waits_for_the_first(db, "UPDATE card SET label = 'b' WHERE id = 7",
                                      "SELECT pgrelay.emit('card.note', '{}', 'card:1')");
  auto r = db.exec("SELECT event_type, key FROM pgrelay.db_events ORDER BY id");
  REQUIRE(r.size() == 6);
  CHECK(r[0][0].as<std::string>() == "acct.note");
  CHECK(r[1][0].as<std::string>() == "acct.update");
  CHECK(r[2][0].as<std::string>() == "acct.update");
  CHECK(r[3][0].as<std::string>() == "acct.note");
  CHECK(r[4][0].as<std::string>() == "card.update");
  CHECK(r[5][0].as<std::string>() == "card.note");
}

TEST_CASE("keys of tracked tables name their schema outside public, and partitions their tracked parent") {
  TestDb db;
  db.exec(
      "CREATE SCHEMA app; CREATE SCHEMA app2;"
      "CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE app.t (id int PRIMARY KEY); CREATE TABLE app2.t (id int "
      "PRIMARY KEY);"
      "CREATE TABLE m (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);"
      "CREATE TABLE m_eu PARTITION OF m FOR VALUES IN ('eu');"
      "SELECT pgrelay.track('t'), pgrelay.track('app.t'), pgrelay.track('app2.t'), pgrelay.track('m');"
      "INSERT INTO t VALUES (1); INSERT INTO app.t VALUES (1); INSERT INTO app2.t VALUES (1);"
      "INSERT INTO m VALUES (1, 'eu')");
  auto r = db.exec("SELECT key FROM pgrelay.db_events ORDER BY id");
  REQUIRE(r.size() == 4);
  CHECK(r[0][0].as<std::string>() == "t:1");  // public tables keep the keys consumers already see
  CHECK(r[1][0].as<std::string>() == "app.t:1");
  CHECK(r[2][0].as<std::string>() == "app2.t:1");
  CHECK(r[3][0].as<std::string>() == "m:1:eu");
}

TEST_CASE("a keyed event behind an unfinished one of its key starts blocked, out of the claim's way") {
  TestDb db;
  db.exec("CREATE TABLE o (id int PRIMARY KEY); SELECT pgrelay.track('o', operations => '{insert}');");
  db.exec(
      "SELECT pgrelay.emit('e', '{}', 'k1'), pgrelay.emit('e', '{}', 'k1'), pgrelay.emit('e', '{}', 'k2'), "
      "pgrelay.emit('e', '{}')");
  db.exec("INSERT INTO o SELECT 1 UNION ALL SELECT 2");  // two keys in one statement: both heads
  auto r = db.exec("SELECT coalesce(key, '-'), status FROM pgrelay.db_events ORDER BY id");
  REQUIRE(r.size() == 6);
  CHECK(r[0][1].as<std::string>() == "pending");
  CHECK(r[1][1].as<std::string>() == "blocked");
  CHECK(r[2][1].as<std::string>() == "pending");
  CHECK(r[3][1].as<std::string>() == "pending");
  CHECK(r[4][1].as<std::string>() == "pending");
  CHECK(r[5][1].as<std::string>() == "pending");
}
