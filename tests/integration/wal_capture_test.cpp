// Capture mode "wal" against a real PostgreSQL: the events decoded from the slot are
// the ones trigger capture writes, and crashes of the relay or the server between
// writing events and confirming them lose none and write none twice.
#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <pqxx/pqxx>

#include "capture/wal_capture.hpp"
#include "store/wal_capture_queries.hpp"
#include "support/child_process.hpp"
#include "support/own_cluster.hpp"
#include "support/temp_config.hpp"
#include "support/test_db.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

void exec(const std::string& url, const std::string& sql) {
  pqxx::connection c(url);
  pqxx::work tx(c);
  tx.exec(sql);
  tx.commit();
}

// Every column type trigger capture turns into something other than a string, and some it keeps as one.
const char* kTables = R"(
  CREATE SCHEMA app;
  CREATE TABLE app.items (id int PRIMARY KEY, name text, price numeric(10, 2), qty bigint, ok boolean,
                          at timestamptz, day date, stamp timestamp, tags text[], nums int[], meta jsonb, doc json,
                          uid uuid, ratio float8, secret text);
  ALTER TABLE app.items REPLICA IDENTITY FULL;
  CREATE TABLE notes (id int PRIMARY KEY, author text, body text, draft boolean);
  ALTER TABLE notes REPLICA IDENTITY FULL;
  SELECT pgrelay.track('app.items', exclude_columns => '{secret}');
  SELECT pgrelay.track('notes', key_columns => '{author}', include_columns => '{id,author,body}');
)";

// One transaction each; run once under trigger capture and once under wal capture.
const std::vector<std::string> kStatements = {
    "INSERT INTO app.items VALUES (1, 'a b', 12.50, 7, true, '2024-05-01 10:00:00.123+02', '2024-05-01', "
    "'2024-05-01 10:00', '{x,\"y z\"}', '{1,2,NULL}', '{\"k\": [1, 2.5], \"n\": null}', '{\"j\":  1}', "
    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 0.25, 's1'), "
    "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'NaN', 's2')",
    "UPDATE app.items SET price = 13, name = 'it''s' WHERE id = 1",
    "UPDATE app.items SET secret = 'only the excluded column' WHERE id = 1",
    "INSERT INTO notes VALUES (1, 'ann', 'first', true), (2, 'bob', 'second', false), (3, 'ann', 'third', true)",
    "UPDATE notes SET draft = false",  // no captured column changed: nothing
    "UPDATE notes SET body = 'edited' WHERE id = 3",
    "DELETE FROM app.items WHERE id = 2",
    "SELECT pgrelay.emit('orders.paid', '{\"order_id\": 42}', 'order:42', '{\"x-source\": \"test\"}')",
    "DELETE FROM notes WHERE author = 'ann'",
};

std::vector<std::string> events(const std::string& url) {
  pqxx::connection c(url);
  pqxx::work tx(c);
  std::vector<std::string> out;
  for (const auto& r : tx.exec("SELECT event_type || ' ' || coalesce(key, '-') || ' ' || status || ' ' || payload::text"
                               " || ' ' || headers::text FROM pgrelay.db_events ORDER BY id")) {
    out.push_back(r[0].as<std::string>());
  }
  return out;
}

const char* kRelayConfig = R"({"relay": {"capture": "wal", "wake": "poll", "done_retention_s": 3600,
                                         "poll_interval_ms": 200},
  "handlers": {"out": {"type": "stdout"}}, "routes": [{"match": "*", "handlers": ["out"]}]})";

// A relay streams from the database's slot. Active alone is not enough: while
// pg_create_logical_replication_slot() waits for a consistent point (for every running
// transaction of the cluster, long under load) the creating backend holds the slot as
// active, and the relay's switch to capture "wal" has not committed yet.
bool slot_active(const std::string& url) {
  return scalar_at(url,
                   "SELECT count(*) FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid "
                   "WHERE s.database = current_database() AND s.active") == 1;
}

// Rows of app.items inserted one transaction each, numbered from `first`.
void insert_items(const std::string& url, int first, int count) {
  pqxx::connection c(url);
  for (int i = first; i < first + count; ++i) {
    pqxx::work tx(c);
    tx.exec_params("INSERT INTO app.items (id, name) VALUES ($1, 'n')", i);
    tx.commit();
  }
}

const char* kItemsOnly = R"(
  CREATE SCHEMA app;
  CREATE TABLE app.items (id int PRIMARY KEY, name text);
  SELECT pgrelay.track('app.items', operations => '{insert}');
)";

// Each captured row exactly once: as many events as rows, none for the same row twice.
void check_once_each(const std::string& url, int rows) {
  CHECK(scalar_at(url, "SELECT count(*) FROM pgrelay.db_events") == rows);
  CHECK(scalar_at(url, "SELECT count(DISTINCT payload -> 'new' ->> 'id') FROM pgrelay.db_events") == rows);
  // ids follow commit order, and the rows were committed in id order
  CHECK(scalar_at(url,
                  "SELECT count(*) FROM (SELECT id, lag((payload -> 'new' ->> 'id')::int) OVER (ORDER BY id) AS before,"
                  " (payload -> 'new' ->> 'id')::int AS row FROM pgrelay.db_events) x WHERE x.before > x.row") == 0);
}

// What `pgrelay run` does with relay.capture = "wal".
void use_wal_capture(const TestDb& db) {
  auto c = db.connect();
  set_capture_mode(*c, "wal");
}

}  // namespace

TEST_CASE("wal capture writes the same events as trigger capture for the same statements") {
  TestDb db;
  db.exec(kTables);
  for (const auto& s : kStatements) db.exec(s);
  const std::vector<std::string> by_trigger = events(db.url());
  REQUIRE(by_trigger.size() == 11);

  db.exec("DELETE FROM pgrelay.db_events; TRUNCATE app.items, notes");
  use_wal_capture(db);
  CHECK(db.scalar("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgrelay_capture%'") == 0);
  CHECK(db.scalar("SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pgrelay_capture'") == 2);
  for (const auto& s : kStatements) db.exec(s);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0);  // producers wrote no event rows

  WalCapture capture(db.url(), nullptr);
  capture.start();
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") >= 11; }, seconds(20)));
  CHECK(capture.decoding());
  const std::vector<std::string> by_wal = events(db.url());
  REQUIRE(by_wal.size() == by_trigger.size());
  for (size_t i = 0; i < by_wal.size(); ++i) {
    INFO("event " << i);
    CHECK(by_wal[i] == by_trigger[i]);
  }
  capture.stop();
  // The slot was told only what is written: nothing more arrives on a second read.
  WalCapture again(db.url(), nullptr);
  again.start();
  std::this_thread::sleep_for(milliseconds(1500));
  again.stop();
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 11);
}

TEST_CASE("a relay killed between writing events and confirming them writes none twice") {
  TestDb db;
  db.exec(kItemsOnly);
  TempConfig cfg(kRelayConfig);
  auto first =
      std::make_unique<ChildProcess>(std::vector<std::string>{PGRELAY_BIN, "-d", db.url(), "-c", cfg.path, "run"},
                                     std::map<std::string, std::string>{{"PGRELAY_CAPTURE_CONFIRM_DELAY_MS", "60000"}});
  INFO("first relay's log: " << first->err());
  REQUIRE(eventually([&] { return slot_active(db.url()); }, seconds(20)));
  db.exec("INSERT INTO app.items (id, name) SELECT g, 'n' FROM generate_series(1, 20) g");
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") == 20; }, seconds(10)));
  // In the window: the events and their position are committed, the slot was not told.
  CHECK(db.scalar("SELECT count(*) FROM pg_replication_slots s JOIN pgrelay.wal_capture w USING (slot_name)"
                  " WHERE s.confirmed_flush_lsn < w.materialized_lsn") == 1);
  first->signal(SIGKILL);
  first->wait(seconds(5));
  first.reset();

  ChildProcess second({PGRELAY_BIN, "-d", db.url(), "-c", cfg.path, "run"});
  INFO("second relay's log: " << second.err());
  REQUIRE(eventually([&] { return slot_active(db.url()); }, seconds(20)));
  insert_items(db.url(), 21, 5);
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") >= 25; }, seconds(10)));
  std::this_thread::sleep_for(milliseconds(500));  // a duplicate would have arrived by now
  check_once_each(db.url(), 25);
  second.signal(SIGTERM);
  CHECK(second.wait(seconds(10)) == 0);
}

TEST_CASE("producers writing while no relay runs lose no captured event") {
  TestDb db;
  db.exec(kItemsOnly);
  TempConfig cfg(kRelayConfig);
  {
    ChildProcess relay({PGRELAY_BIN, "-d", db.url(), "-c", cfg.path, "run"});
    REQUIRE(eventually([&] { return slot_active(db.url()); }, seconds(20)));
    insert_items(db.url(), 1, 10);
    REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") == 10; }, seconds(10)));
    relay.signal(SIGTERM);
    CHECK(relay.wait(seconds(10)) == 0);
  }
  insert_items(db.url(), 11, 200);
  db.exec("SELECT pgrelay.emit('note.added', jsonb_build_object('n', g)) FROM generate_series(1, 50) g");
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 10);  // nothing written while it was down
  ChildProcess relay({PGRELAY_BIN, "-d", db.url(), "-c", cfg.path, "run"});
  INFO("relay's log: " << relay.err());
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") >= 260; }, seconds(20)));
  std::this_thread::sleep_for(milliseconds(300));
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 260);
  CHECK(db.scalar("SELECT count(DISTINCT payload -> 'new' ->> 'id') FROM pgrelay.db_events "
                  "WHERE event_type = 'items.insert'") == 210);
  CHECK(db.scalar("SELECT count(DISTINCT payload ->> 'n') FROM pgrelay.db_events WHERE event_type = 'note.added'") ==
        50);
  // the emits committed after every insert, so their ids come after every insert's
  CHECK(db.scalar("SELECT (min(id) FILTER (WHERE event_type = 'note.added') > max(id) FILTER "
                  "(WHERE event_type = 'items.insert'))::int FROM pgrelay.db_events") == 1);
  relay.signal(SIGTERM);
  CHECK(relay.wait(seconds(10)) == 0);
}

TEST_CASE("a crash restart of PostgreSQL while capturing loses and duplicates nothing") {
  OwnCluster cluster("walcapture-crash");
  const std::string url = cluster.url();
  exec(url, kItemsOnly);
  TempConfig cfg(kRelayConfig);
  // A wide window between commit and confirmation, so the crash lands in it.
  ChildProcess relay({PGRELAY_BIN, "-d", url, "-c", cfg.path, "run"}, {{"PGRELAY_CAPTURE_CONFIRM_DELAY_MS", "2000"}});
  INFO("relay's log: " << relay.err());
  REQUIRE(eventually([&] { return slot_active(url); }, seconds(20)));
  insert_items(url, 1, 100);
  REQUIRE(eventually([&] { return scalar_at(url, "SELECT count(*) FROM pgrelay.db_events") == 100; }, seconds(10)));
  cluster.restart_immediate();
  insert_items(url, 101, 100);
  REQUIRE(eventually([&] { return scalar_at(url, "SELECT count(*) FROM pgrelay.db_events") >= 200; }, seconds(30)));
  std::this_thread::sleep_for(milliseconds(2500));  // past the confirmation delay: a duplicate would be here
  check_once_each(url, 200);
  relay.signal(SIGTERM);
  relay.wait(seconds(10));
}

TEST_CASE("a second relay takes over decoding within seconds when the decoding one is killed") {
  TestDb db;
  db.exec(kItemsOnly);
  TempConfig cfg(kRelayConfig);
  auto first =
      std::make_unique<ChildProcess>(std::vector<std::string>{PGRELAY_BIN, "-d", db.url(), "-c", cfg.path, "run"});
  REQUIRE(eventually([&] { return first->err().find("decoding the slot") != std::string::npos; }, seconds(20)));
  ChildProcess second({PGRELAY_BIN, "-d", db.url(), "-c", cfg.path, "run"});
  INFO("second relay's log: " << second.err());
  REQUIRE(eventually([&] { return second.err().find("standing by") != std::string::npos; }, seconds(20)));
  insert_items(db.url(), 1, 10);
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") == 10; }, seconds(10)));
  first->signal(SIGKILL);
  first->wait(seconds(5));
  first.reset();
  const auto killed_at = std::chrono::steady_clock::now();
  insert_items(db.url(), 11, 10);
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") == 20; }, seconds(15)));
  const auto takeover = std::chrono::steady_clock::now() - killed_at;
  MESSAGE("takeover took " << std::chrono::duration_cast<milliseconds>(takeover).count() << " ms");
  CHECK(takeover < seconds(5));
  CHECK(second.err().find("decoding the slot") != std::string::npos);
  check_once_each(db.url(), 20);
  second.signal(SIGTERM);
  CHECK(second.wait(seconds(10)) == 0);
}

TEST_CASE("capture wal explains a role without REPLICATION and one that may not create the publication") {
  TestDb db;
  const std::string role = "pgrelay_norepl_" + db.name().substr(db.name().size() - 8);
  db.exec("CREATE ROLE " + role + " LOGIN; GRANT ALL ON SCHEMA pgrelay TO " + role +
          "; GRANT ALL ON ALL TABLES IN SCHEMA pgrelay TO " + role +
          "; GRANT ALL ON ALL SEQUENCES IN SCHEMA pgrelay TO " + role);
  const std::string as_role = db.url() + " user=" + role;
  auto attempt = [&] {
    try {
      pqxx::connection c(as_role);
      set_capture_mode(c, "wal");
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string no_replication = attempt();
  CHECK(no_replication.find("needs a role with the REPLICATION attribute") != std::string::npos);
  db.exec("ALTER ROLE " + role + " REPLICATION");
  const std::string no_create = attempt();
  CHECK(no_create.find("cannot create the publication pgrelay_capture") != std::string::npos);
  // Neither attempt left a slot behind (a slot outlives the transaction that failed).
  CHECK(db.scalar("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()") == 0);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.settings WHERE name = 'capture' AND value = 'trigger'") == 1);
  db.exec("DROP OWNED BY " + role);
  pqxx::connection admin(server_url());
  pqxx::nontransaction(admin).exec("DROP ROLE " + role);
}

TEST_CASE("track in capture wal asks for REPLICA IDENTITY FULL and untrack and drop_wal_capture clean up") {
  TestDb db;
  db.exec("CREATE TABLE t (id int PRIMARY KEY, v text)");
  use_wal_capture(db);
  try {
    db.exec("SELECT pgrelay.track('t')");
    FAIL("track() accepted a table without REPLICA IDENTITY FULL");
  } catch (const pqxx::sql_error& e) {
    CHECK(std::string(e.what()).find("needs REPLICA IDENTITY FULL on t") != std::string::npos);
  }
  db.exec("SELECT pgrelay.track('t', operations => '{insert}')");  // inserts need no old row
  CHECK(db.scalar("SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pgrelay_capture'") == 1);
  db.exec("SELECT pgrelay.untrack('t')");
  CHECK(db.scalar("SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pgrelay_capture'") == 0);
  CHECK(db.scalar("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()") == 1);
  db.exec("SELECT pgrelay.drop_wal_capture()");
  CHECK(db.scalar("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()") == 0);
  CHECK(db.scalar("SELECT count(*) FROM pg_publication WHERE pubname = 'pgrelay_capture'") == 0);
}

TEST_CASE("materialize_wal writes a batch once and skips transactions before the recorded position") {
  TestDb db;
  use_wal_capture(db);
  const std::string slot = db.exec("SELECT pgrelay.capture_slot_name()")[0][0].as<std::string>();
  auto conn = db.connect();
  const std::string batch =
      R"([{"c": "0/100", "op": "message", "m": {"type": "a.b", "key": "k", "payload": {"n": 1}}},
          {"c": "0/200", "op": "message", "m": {"type": "a.b", "key": "k", "payload": {"n": 2}}}])";
  CHECK(materialize_changes(*conn, slot, "0/210", batch) == 2);
  CHECK(materialize_changes(*conn, slot, "0/210", batch) == 0);  // sent again after a crash
  // A batch that overlaps: only the transaction committed after 0/210 is new.
  const std::string overlap =
      R"([{"c": "0/200", "op": "message", "m": {"type": "a.b", "key": "k", "payload": {"n": 2}}},
          {"c": "0/300", "op": "message", "m": {"type": "a.b", "key": "k", "payload": {"n": 3}}}])";
  CHECK(materialize_changes(*conn, slot, "0/310", overlap) == 1);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 3);
  // In commit order, the first of the key pending and the others behind it.
  const auto r = db.exec("SELECT payload ->> 'n', status FROM pgrelay.db_events ORDER BY id");
  CHECK(r[0][0].as<std::string>() == "1");
  CHECK(r[0][1].as<std::string>() == "pending");
  CHECK(r[1][1].as<std::string>() == "blocked");
  CHECK(r[2][0].as<std::string>() == "3");
  CHECK(r[2][1].as<std::string>() == "blocked");
  CHECK(db.scalar("SELECT events FROM pgrelay.wal_capture") == 3);
}

TEST_CASE("switching a database from trigger to wal capture and back captures every row once") {
  TestDb db;
  db.exec(kItemsOnly);
  insert_items(db.url(), 1, 5);  // by triggers
  use_wal_capture(db);
  WalCapture capture(db.url(), nullptr);
  capture.start();
  insert_items(db.url(), 6, 5);  // through the slot
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") == 10; }, seconds(20)));
  db.exec("SELECT pgrelay.set_capture('trigger')");
  CHECK(db.scalar("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgrelay_capture%'") == 1);
  CHECK(db.scalar("SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pgrelay_capture'") == 0);
  insert_items(db.url(), 11, 5);                   // by triggers again
  std::this_thread::sleep_for(milliseconds(500));  // the slot would have sent them by now
  capture.stop();
  check_once_each(db.url(), 15);
}
