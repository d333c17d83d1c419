// The sql handler: its function runs in the transaction that records success,
// so its effect happens exactly once, even across a crash between the two.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>

#include "support/child_process.hpp"
#include "support/recording_handler.hpp"
#include "support/temp_config.hpp"
#include "support/test_db.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

constexpr const char* kLedger = R"sql(
CREATE SCHEMA app;
CREATE TABLE app.ledger (event_id bigint NOT NULL, attempt int NOT NULL, recorded_at timestamptz DEFAULT clock_timestamp());
CREATE TABLE app.ctl (slow boolean NOT NULL);
INSERT INTO app.ctl VALUES (false);
CREATE FUNCTION app.record(ev jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO app.ledger (event_id, attempt) VALUES ((ev->>'id')::bigint, (ev->>'attempt')::int);
  IF (ev->'payload'->>'fail')::boolean THEN
    RAISE EXCEPTION 'cannot record event %', ev->>'id';
  END IF;
  IF (SELECT slow FROM app.ctl) THEN
    PERFORM pg_sleep(3);
  END IF;
END $$;
)sql";

Config sql_config(const TestDb& db, int max_attempts) {
  Config c = test_config(db.url());
  HandlerConfig h;
  h.name = "ledger";
  h.type = "sql";
  h.function = "app.record";
  h.retry = RetryPolicy{max_attempts, 50, 200, 0.0};
  c.handlers.push_back(h);
  c.routes.push_back(Route{"*", {"ledger"}});
  return c;
}

}  // namespace

TEST_CASE("a sql handler's function runs once per event and a raising function leaves no row") {
  TestDb db;
  db.exec(kLedger);
  Relay relay(sql_config(db, 2));
  RelayThread t(relay);
  db.exec("SELECT pgrelay.emit('order.paid', jsonb_build_object('n', g)) FROM generate_series(1, 50) g");
  db.exec(R"(SELECT pgrelay.emit('order.paid', '{"fail": true}'))");
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status <> 'dead'") == 0; },
                     seconds(10)));
  t.stop();
  CHECK(db.scalar("SELECT count(*) FROM app.ledger") == 50);
  CHECK(db.scalar("SELECT count(DISTINCT event_id) FROM app.ledger") == 50);
  auto dead = db.exec("SELECT attempts, last_error FROM pgrelay.db_events");
  REQUIRE(dead.size() == 1);
  CHECK(dead[0][0].as<int>() == 2);
  CHECK(dead[0][1].as<std::string>().find("cannot record event 51") != std::string::npos);
}

TEST_CASE("a sql handler beside an in-process handler: each runs, and a sql failure re-runs only the sql handler") {
  TestDb db;
  db.exec(kLedger);
  // Fails twice (a sequence counts calls outside any transaction), after writing its row.
  db.exec(
      "CREATE SEQUENCE app.calls;"
      "CREATE FUNCTION app.flaky_record(ev jsonb) RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
      "INSERT INTO app.ledger (event_id, attempt) VALUES ((ev->>'id')::bigint, (ev->>'attempt')::int); "
      "IF nextval('app.calls') < 3 THEN RAISE EXCEPTION 'not yet'; END IF; END $$");
  Config c = sql_config(db, 5);
  c.handlers[0].function = "app.flaky_record";
  c.routes.clear();
  Relay relay(c);
  auto rec = std::make_unique<RecordingHandler>();
  RecordingHandler* r = rec.get();
  relay.add_handler("mem", std::move(rec));
  relay.add_route("*", {"mem", "ledger"});
  RelayThread t(relay);
  db.exec("SELECT pgrelay.emit('x', '{}')");
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0; }, seconds(10)));
  t.stop();
  CHECK(r->count() == 1);  // succeeded on attempt 1, not re-run
  CHECK(db.scalar("SELECT last_value FROM app.calls") == 3);
  auto ledger = db.exec("SELECT attempt FROM app.ledger");
  REQUIRE(ledger.size() == 1);  // the failed calls' rows were rolled back
  CHECK(ledger[0][0].as<int>() == 3);
}

TEST_CASE("a sql handler's effect happens exactly once even when the relay is killed between handler and ack") {
  TestDb db;
  db.exec(kLedger);
  db.exec("UPDATE app.ctl SET slow = true");
  TempConfig cfg(R"({"relay": {"lease_ms": 2000},
    "handlers": {"ledger": {"type": "sql", "function": "app.record", "timeout_ms": 5000}},
    "routes": [{"match": "*", "handlers": ["ledger"]}]})");
  db.exec("SELECT pgrelay.emit('order.paid', jsonb_build_object('n', g)) FROM generate_series(1, 3) g");
  {
    ChildProcess doomed({PGRELAY_BIN, "-d", db.url(), "-c", cfg.path, "run"});
    // Wait until the function has inserted (uncommitted) and sleeps inside the ack transaction.
    REQUIRE(eventually(
        [&] {
          return db.scalar(
                     "SELECT count(*) FROM pg_stat_activity WHERE datname = '" + db.name() +
                     "' AND query LIKE '%pgrelay.call_handler(%' AND state = 'active' AND pid <> pg_backend_pid()") ==
                 1;
        },
        seconds(10)));
    doomed.signal(SIGKILL);
    doomed.wait(seconds(5));
  }
  db.exec("UPDATE app.ctl SET slow = false");
  Relay survivor(sql_config(db, 5));
  RelayThread t(survivor);
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0; }, seconds(15)));
  t.stop();
  CHECK(db.scalar("SELECT count(*) FROM app.ledger") == 3);
  CHECK(db.scalar("SELECT count(DISTINCT event_id) FROM app.ledger") == 3);
  CHECK(db.scalar("SELECT min(attempt) FROM app.ledger") == 2);  // the first attempt's effect was rolled back
}

TEST_CASE("a sql handler naming a missing function retries with a clear reason, and delivers once it exists") {
  TestDb db;
  db.exec(kLedger);
  Config c = sql_config(db, 100);  // a dead letter after one attempt would be the bug, not the policy
  c.handlers[0].function = "app.nope";
  Relay relay(c);
  RelayThread t(relay);
  db.exec("SELECT pgrelay.emit('x', '{}')");
  // Retried, not dead-lettered: still pending after several attempts, each naming the function.
  REQUIRE(eventually(
      [&] {
        return db.scalar(
                   "SELECT count(*) FROM pgrelay.db_events WHERE status = 'pending' "
                   "AND attempts >= 3 AND last_error LIKE '%app.nope%'") == 1;
      },
      seconds(20)));
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'dead'") == 0);
  // Deploying the function is all it takes: the next attempt calls it.
  db.exec(
      "CREATE FUNCTION app.nope(ev jsonb) RETURNS void LANGUAGE sql AS "
      "$$ INSERT INTO app.ledger (event_id, attempt) VALUES ((ev->>'id')::bigint, (ev->>'attempt')::int) $$");
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0; }, seconds(20)));
  t.stop();
  CHECK(db.scalar("SELECT count(*) FROM app.ledger") == 1);
  CHECK(db.scalar("SELECT min(attempt) FROM app.ledger") >= 4);
}
