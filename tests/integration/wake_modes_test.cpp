// Wake modes: notify, poll and wal each deliver a burst in full, and neither a
// relay restart nor a database crash-restart loses an event or repeats an sql effect.
#include <doctest/doctest.h>
#include <signal.h>

#include <set>
#include <thread>

#include "store/admin_queries.hpp"
#include "support/child_process.hpp"
#include "support/own_cluster.hpp"
#include "support/recording_handler.hpp"
#include "support/temp_config.hpp"
#include "support/test_db.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

const char* kModes[] = {"notify", "poll", "wal"};

// A relay woken only by its wake mode: the safety poll is a minute away.
Config woken_only(const TestDb& db, const std::string& mode) {
  Config c = test_config(db.url());
  c.relay.wake = mode;
  c.relay.poll_interval_ms = 60000;
  return c;
}

// Dead events, as a relay that gave up on them leaves them.
void insert_dead(const TestDb& db, int n) {
  db.exec(
      "INSERT INTO pgrelay.db_events (event_type, payload, status, attempts, finished_at, last_error) "
      "SELECT 'again', jsonb_build_object('n', g), 'dead', 5, now(), 'gave up' FROM generate_series(1, " +
      std::to_string(n) + ") g");
}

}  // namespace

TEST_CASE("each wake mode delivers a burst in full, and poll and wal send no NOTIFY") {
  for (const std::string mode : kModes) {
    CAPTURE(mode);
    TestDb db;
    Relay relay(woken_only(db, mode));  // the safety poll must not be what delivers
    RecordingHandler* rec = add_recorder(relay);
    RelayThread t(relay);
    REQUIRE(eventually(
        [&] {
          return db.scalar("SELECT count(*) FROM pgrelay.settings WHERE name = 'wake' AND value = '" +
                           std::string(mode) + "'") == 1;
        },
        seconds(5)));
    if (std::string(mode) != "poll") REQUIRE(eventually([&] { return relay.listening(); }, seconds(10)));
    // Producers follow the mode: the NOTIFY trigger on db_events exists only in notify mode.
    const int64_t notifies = db.scalar("SELECT count(*) FROM pg_trigger WHERE tgname = 'pgrelay_wake'");
    CHECK(notifies == (std::string(mode) == "notify" ? 1 : 0));
    for (int i = 0; i < 10; ++i)
      db.exec("SELECT pgrelay.emit('burst', jsonb_build_object('n', g)) FROM generate_series(1, 100) g");
    REQUIRE(eventually([&] { return rec->count() >= 1000; }, seconds(20)));
    t.stop();
    std::set<int64_t> ids;
    for (const auto& d : rec->deliveries()) ids.insert(d.id);
    CHECK(ids.size() == 1000);
    CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0);
  }
}

TEST_CASE(
    "in each wake mode, a relay restart and a database crash-restart lose nothing and apply each sql effect once") {
  for (const std::string mode : kModes) {
    CAPTURE(mode);
    OwnCluster pg(std::string("wake-") + mode);
    // The safety poll is a minute away: after the crash only a new LISTEN, a new
    // slot (or, in poll mode, the poll) can find the events emitted then.
    TempConfig cfg(std::string(R"({"relay": {"wake": ")") + mode + R"(", "lease_ms": 3000, "poll_interval_ms": 60000},
      "handlers": {"ledger": {"type": "sql", "function": "app.record", "timeout_ms": 5000}},
      "routes": [{"match": "*", "handlers": ["ledger"]}]})");
    {
      pqxx::connection c(pg.url());
      pqxx::work tx(c);
      // No unique constraint on seq: an effect applied twice shows as a second row.
      tx.exec(
          "CREATE SCHEMA app; CREATE TABLE app.ledger (seq int NOT NULL);"
          "CREATE TABLE app.ctl (slow boolean NOT NULL); INSERT INTO app.ctl VALUES (false);"
          "CREATE FUNCTION app.record(ev jsonb) RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
          "INSERT INTO app.ledger VALUES ((ev->'payload'->>'seq')::int); "
          "IF (SELECT slow FROM app.ctl) THEN PERFORM pg_sleep(0.01); END IF; END $$");
      tx.commit();
    }
    auto emit = [&](int from, int to) {
      for (int i = from; i <= to; i += 50) {
        scalar_at(pg.url(), "SELECT count(pgrelay.emit('e', jsonb_build_object('seq', g))) FROM generate_series(" +
                                std::to_string(i) + ", " + std::to_string(std::min(to, i + 49)) + ") g");
      }
    };
    auto unfinished = [&] {
      try {
        return scalar_at(pg.url(), "SELECT count(*) FROM pgrelay.db_events");
      } catch (const std::exception&) {
        return int64_t{-1};
      }
    };
    auto relay =
        std::make_unique<ChildProcess>(std::vector<std::string>{PGRELAY_BIN, "-d", pg.url(), "-c", cfg.path, "run"});
    emit(1, 300);
    REQUIRE(eventually([&] { return scalar_at(pg.url(), "SELECT count(*) FROM app.ledger") >= 100; }, seconds(20)));
    relay->signal(SIGKILL);
    relay->wait(seconds(5));
    emit(301, 400);  // while no relay runs
    relay =
        std::make_unique<ChildProcess>(std::vector<std::string>{PGRELAY_BIN, "-d", pg.url(), "-c", cfg.path, "run"});
    REQUIRE(eventually([&] { return unfinished() == 0; }, seconds(30)));

    // A crash while sql handlers run: 10 ms per call, 200 calls.
    scalar_at(pg.url(), "WITH u AS (UPDATE app.ctl SET slow = true RETURNING 1) SELECT count(*) FROM u");
    emit(401, 600);
    REQUIRE(eventually([&] { return scalar_at(pg.url(), "SELECT count(*) FROM app.ledger") >= 420; }, seconds(30)));
    pg.restart_immediate();
    const int64_t interrupted = unfinished();
    CHECK(interrupted > 0);  // the crash came with deliveries in flight
    scalar_at(pg.url(), "WITH u AS (UPDATE app.ctl SET slow = false RETURNING 1) SELECT count(*) FROM u");
    const bool recovered = eventually([&] { return unfinished() == 0; }, seconds(40));
    CHECK_MESSAGE(recovered, relay->err());
    // After the relay found its way back: these only reach it by its wake mode.
    emit(601, 700);
    const bool woken = eventually([&] { return unfinished() == 0; }, seconds(20));
    CHECK_MESSAGE(woken, relay->err());
    relay->signal(SIGTERM);
    CHECK(relay->wait(seconds(15)) == std::optional<int>(0));
    CHECK(scalar_at(pg.url(), "SELECT count(DISTINCT seq) FROM app.ledger") == 700);
    CHECK(scalar_at(pg.url(), "SELECT count(*) FROM app.ledger") == 700);  // no effect applied twice
    CHECK(scalar_at(pg.url(), "SELECT min(seq) FROM app.ledger") == 1);
    CHECK(scalar_at(pg.url(), "SELECT max(seq) FROM app.ledger") == 700);
  }
}

TEST_CASE("in notify and wal modes, dead events sent back by dead retry are delivered without waiting for the poll") {
  // A retry is an UPDATE: it wakes through pgrelay.wake(), a NOTIFY or a logical message.
  for (const std::string mode : {"notify", "wal"}) {
    CAPTURE(mode);
    TestDb db;
    insert_dead(db, 3);
    Relay relay(woken_only(db, mode));  // the safety poll must not be what delivers
    RecordingHandler* rec = add_recorder(relay);
    RelayThread t(relay);
    REQUIRE(eventually([&] { return relay.listening(); }, seconds(30)));
    std::this_thread::sleep_for(milliseconds(200));  // past the relay's first claim, which finds nothing due
    REQUIRE(rec->count() == 0);
    pqxx::connection admin(db.url());
    CHECK(retry_dead(admin, DeadFilter{}) == 3);
    CHECK(eventually([&] { return rec->count() == 3; }, seconds(5)));
    t.stop();
  }
}

TEST_CASE(
    "in wal mode, an empty claim right after a wake looks again shortly, for a commit reported before it was visible") {
  // The slot can report a commit a moment before other snapshots see it. Here a wake
  // from one transaction arrives while the change it should find is not committed yet.
  TestDb db;
  insert_dead(db, 1);
  Relay relay(woken_only(db, "wal"));  // the safety poll must not be what delivers
  RecordingHandler* rec = add_recorder(relay);
  RelayThread t(relay);
  REQUIRE(eventually([&] { return relay.listening(); }, seconds(30)));
  std::this_thread::sleep_for(milliseconds(200));
  auto producer = db.connect();
  pqxx::work late(*producer);
  late.exec(
      "UPDATE pgrelay.db_events SET status = 'pending', attempts = 0, next_attempt_at = now()");  // no wake of its own
  const int64_t claims = relay.stats().claim_batches;
  db.exec("SELECT pgrelay.wake()");
  // It looked and saw nothing; commit at once, well within the second look's 10 ms.
  const auto until = std::chrono::steady_clock::now() + seconds(5);
  while (relay.stats().claim_batches == claims && std::chrono::steady_clock::now() < until) {
  }
  late.commit();
  REQUIRE(relay.stats().claim_batches > claims);
  CHECK(rec->count() == 0);
  CHECK(eventually([&] { return rec->count() == 1; }, seconds(2)));
  t.stop();
}
