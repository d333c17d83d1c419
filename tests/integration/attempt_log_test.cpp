// The attempt log end to end: a real relay delivering to a real HTTP receiver and real
// child processes, its attempts read back from pgrelay.attempts, pgrelay.event_state() and
// the `events` and `wait` commands.
#include <doctest/doctest.h>
#include <unistd.h>

#include "support/child_process.hpp"
#include "support/http_receiver.hpp"
#include "support/recording_handler.hpp"
#include "store/migrate.hpp"
#include "support/test_db.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

HandlerConfig webhook(const std::string& url, int max_attempts = 5) {
  HandlerConfig h;
  h.name = "hook";
  h.type = "webhook";
  h.url = url;
  h.retry = RetryPolicy{max_attempts, 100, 200, 0.0};
  h.timeout_ms = 3000;
  h.connect_timeout_ms = 1000;
  return h;
}

Config relay_config(const TestDb& db, HandlerConfig h) {
  Config c = test_config(db.url());
  c.routes.push_back(Route{"*", {h.name}});
  c.handlers.push_back(std::move(h));
  return c;
}

std::string text(const TestDb& db, const std::string& sql) {
  const auto r = db.exec(sql);
  return r.empty() || r[0][0].is_null() ? "<null>" : r[0][0].as<std::string>();
}

int64_t emit(const TestDb& db, const std::string& type = "orders.paid") {
  return db.scalar("SELECT pgrelay.emit('" + type + "', '{\"n\": 1}')");
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("a webhook answered 503 then 200 leaves two attempts with their statuses and durations") {
  TestDb db;
  HttpReceiver rx;
  Reply busy = Reply::with_status(503, "busy, try later");
  busy.delay = milliseconds(60);
  rx.script({busy, Reply::with_status(200, "thanks")});
  Relay relay(relay_config(db, webhook(rx.url())));
  RelayThread t(relay);
  const int64_t id = emit(db);
  const std::string where = " FROM pgrelay.attempts WHERE event_id = " + std::to_string(id);
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*)" + where) == 2; }, seconds(10)));
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0);  // delivered and deleted
  const auto rows =
      db.exec("SELECT attempt, handler, relay_id, outcome, http_status, response_head, duration_ms, error" + where +
              " ORDER BY started_at");
  REQUIRE(rows.size() == 2);
  CHECK(rows[0][0].as<int>() == 1);
  CHECK(rows[0][1].as<std::string>() == "hook");
  CHECK(rows[0][2].as<std::string>() == relay.id());
  CHECK(rows[0][3].as<std::string>() == "retry");
  CHECK(rows[0][4].as<int>() == 503);
  CHECK(rows[0][5].as<std::string>() == "busy, try later");
  CHECK(rows[0][6].as<double>() >= 60.0);  // the receiver took 60 ms to answer
  CHECK(contains(rows[0][7].as<std::string>(), "HTTP 503"));
  CHECK(rows[1][0].as<int>() == 2);
  CHECK(rows[1][3].as<std::string>() == "ok");
  CHECK(rows[1][4].as<int>() == 200);
  CHECK(rows[1][5].as<std::string>() == "thanks");
  CHECK(rows[1][6].as<double>() > 0.0);
  CHECK(rows[1][7].is_null());
  // The second attempt started after the first ended, by at least the backoff.
  CHECK(db.scalar("SELECT (max(started_at) - min(started_at) >= interval '150 milliseconds')::int" + where) == 1);
  // The receipt knows it was delivered although its row is gone.
  CHECK(text(db, "SELECT pgrelay.event_state(" + std::to_string(id) + ") ->> 'status'") == "done");
  CHECK(text(db, "SELECT pgrelay.event_state(" + std::to_string(id) + ") -> 'handlers' -> 0 ->> 'attempts'") == "2");
}

TEST_CASE("a failing command leaves its exit code and the head of its stderr in the attempt log") {
  TestDb db;
  HandlerConfig h;
  h.name = "mailer";
  h.type = "command";
  h.argv = {"sh", "-c", "cat > /dev/null; echo 'smtp: connection refused by mx1' >&2; exit 7"};
  h.retry = RetryPolicy{1, 100, 200, 0.0};
  h.timeout_ms = 3000;
  Config c = relay_config(db, h);
  c.attempts.response_head_bytes = 10;
  Relay relay(c);
  RelayThread t(relay);
  const int64_t id = emit(db);
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'dead'") == 1; },
                     seconds(10)));
  const auto rows = db.exec(
      "SELECT handler, attempt, outcome, exit_code, http_status, response_head, error FROM pgrelay.attempts "
      "WHERE event_id = " +
      std::to_string(id));
  REQUIRE(rows.size() == 1);
  CHECK(rows[0][0].as<std::string>() == "mailer");
  CHECK(rows[0][1].as<int>() == 1);
  CHECK(rows[0][2].as<std::string>() == "dead");  // its only allowed attempt
  CHECK(rows[0][3].as<int>() == 7);
  CHECK(rows[0][4].is_null());
  CHECK(rows[0][5].as<std::string>() == "smtp: conn");  // cut at response_head_bytes
  CHECK(contains(rows[0][6].as<std::string>(), "exit status 7"));
}

TEST_CASE("a dead event's history holds every attempt up to the one that killed it") {
  TestDb db;
  HttpReceiver rx;
  rx.script({Reply::with_status(503, "down"), Reply::with_status(503, "still down"), Reply::with_status(410, "gone")});
  Relay relay(relay_config(db, webhook(rx.url())));
  RelayThread t(relay);
  const int64_t id = emit(db);
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'dead'") == 1; },
                     seconds(10)));
  t.stop();
  const auto rows =
      db.exec("SELECT attempt, outcome, http_status, response_head FROM pgrelay.attempts WHERE event_id = " +
              std::to_string(id) + " ORDER BY started_at");
  REQUIRE(rows.size() == 3);
  const std::vector<std::tuple<int, std::string, int, std::string>> want = {
      {1, "retry", 503, "down"}, {2, "retry", 503, "still down"}, {3, "dead", 410, "gone"}};
  for (size_t i = 0; i < want.size(); ++i) {
    CAPTURE(i);
    CHECK(rows[i][0].as<int>() == std::get<0>(want[i]));
    CHECK(rows[i][1].as<std::string>() == std::get<1>(want[i]));
    CHECK(rows[i][2].as<int>() == std::get<2>(want[i]));
    CHECK(rows[i][3].as<std::string>() == std::get<3>(want[i]));
  }
  // The same history through the CLI, for a person and as JSON.
  const auto human = run_pgrelay({"-d", db.url(), "events", "show", std::to_string(id)});
  CHECK(human.code == 0);
  CHECK(contains(human.out, "event " + std::to_string(id) + "  dead"));
  CHECK(contains(human.out, "#1  hook  retry  HTTP 503"));
  CHECK(contains(human.out, "#3  hook  dead  HTTP 410"));
  CHECK(contains(human.out, "response: still down"));
  const auto json = run_pgrelay({"-d", db.url(), "events", "show", "--json", std::to_string(id)});
  CHECK(json.code == 0);
  CHECK(contains(json.out, "\"status\": \"dead\""));
  CHECK(contains(json.out, "\"payload\": {\"n\": 1}"));
  CHECK(contains(json.out, "\"http_status\": 410"));
  const auto list = run_pgrelay({"-d", db.url(), "events", "list", "--status", "dead", "--json"});
  CHECK(list.code == 0);
  CHECK(contains(list.out, "{\"id\":" + std::to_string(id) + ",\"type\":\"orders.paid\""));
  CHECK(contains(list.out, "\"status\":\"dead\",\"attempts\":3"));
}

TEST_CASE("wait exits 0 for delivered events and 3 for a dead one and 4 at its timeout") {
  TestDb db;
  HttpReceiver rx;
  rx.respond_with([](const ReceivedRequest& r) {
    return r.body.find("\"type\":\"orders.bad\"") != std::string::npos ? Reply::with_status(410, "gone")
                                                                       : Reply::with_status(200);
  });
  Relay relay(relay_config(db, webhook(rx.url())));
  RelayThread t(relay);
  db.exec("SELECT pgrelay.pause('orders.held', 'test')");
  const std::string good1 = std::to_string(emit(db)), good2 = std::to_string(emit(db));
  const std::string bad = std::to_string(emit(db, "orders.bad"));
  const std::string held = std::to_string(emit(db, "orders.held"));
  const auto ok = run_pgrelay({"-d", db.url(), "wait", good1, good2, "--timeout", "10"});
  CHECK(ok.code == 0);
  CHECK(contains(ok.out, "2 events delivered"));
  const auto dead = run_pgrelay({"-d", db.url(), "wait", good1, bad, "--timeout", "10"});
  CHECK(dead.code == 3);
  CHECK(contains(dead.out, "event " + bad + " is dead"));
  const auto start = std::chrono::steady_clock::now();
  const auto late = run_pgrelay({"-d", db.url(), "wait", good1, held, "--timeout", "0.5"});
  CHECK(late.code == 4);
  CHECK(contains(late.out, "timed out with 1 not delivered (first: " + held + ")"));
  CHECK(std::chrono::steady_clock::now() - start < seconds(5));
  // A dead letter purged stays a failure for wait: the attempt log still tells.
  db.exec("DELETE FROM pgrelay.db_events WHERE id = " + bad);
  CHECK(text(db, "SELECT pgrelay.event_state(" + bad + ") ->> 'status'") == "purged");
  CHECK(run_pgrelay({"-d", db.url(), "wait", bad, "--timeout", "1"}).code == 3);
  CHECK(text(db, "SELECT pgrelay.event_state(999999) ->> 'status'") == "unknown");
  // Once its attempts are gone too, nothing tells a delivered event from a purged one:
  // wait counts it as delivered and says why.
  db.exec("TRUNCATE pgrelay.attempt_batches");
  const auto gone = run_pgrelay({"-d", db.url(), "wait", bad, "--timeout", "1"});
  CHECK(gone.code == 0);
  CHECK(contains(gone.err, "event " + bad + " is no longer held and the attempt log has no record of it"));
}

TEST_CASE("a drained backlog's attempts are stored one row per acked batch, not one per attempt") {
  TestDb db;
  HttpReceiver rx;
  Config c = relay_config(db, webhook(rx.url()));
  // Acks wait for their claim's whole batch (or 500 ms), not 2 ms, so the number of acks
  // does not depend on how fast this machine delivers (under ASan ~9 per ack otherwise).
  c.relay.ack_delay_ms = 500;
  Relay relay(c);
  RelayThread t(relay);
  db.exec("SELECT pgrelay.emit('orders.paid', jsonb_build_object('n', g)) FROM generate_series(1, 2000) g");
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0; }, seconds(20)));
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.attempts") == 2000; }, seconds(5)));
  // Acks go in batches of up to relay.batch_size (256), split at event-id buckets of 1,024:
  // about 8 + 2 rows; a row per attempt would be 2,000.
  const int64_t rows = db.scalar("SELECT count(*) FROM pgrelay.attempt_batches");
  CAPTURE(rows);
  CHECK(rows < 100);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.attempt_batches b, json_array_elements(b.attempts) a "
                  "WHERE (a ->> 'e')::bigint >> 10 <> b.bucket") == 0);
  // Every event's receipt finds its one attempt through its bucket.
  CHECK(db.scalar("SELECT count(*) FROM generate_series(1, 2000) g WHERE (SELECT count(*) FROM "
                  "pgrelay.attempts_of(g) a WHERE a.outcome = 'ok' AND a.handler = 'hook') <> 1") == 0);
}

TEST_CASE("upgrading to the batched attempt log keeps every attempt the per-attempt table held") {
  const std::string name = "t_upgrade_attempts_" + std::to_string(::getpid());
  pqxx::connection admin(server_url());
  pqxx::nontransaction(admin).exec("DROP DATABASE IF EXISTS " + name);
  pqxx::nontransaction(admin).exec("CREATE DATABASE " + name);
  {
    pqxx::connection conn(with_dbname(server_url(), name));
    // The schema as 0.x with the 0006 table left it: every versioned migration before 0008.
    std::vector<SqlFile> before;
    for (const SqlFile& f : embedded_sql()) {
      if (f.kind == SqlFile::Kind::versioned && std::string(f.name) < "0008") before.push_back(f);
    }
    migrate(conn, before);
    pqxx::work old(conn);
    old.exec(
        "INSERT INTO pgrelay.attempts (event_id, handler, attempt, relay_id, started_at, duration_ms, outcome, "
        "http_status, error, response_head) VALUES "
        "(5, 'hook', 1, 'r1', '2026-01-01 00:00:00+00', 12.5, 'retry', 503, 'HTTP 503', 'busy'), "
        "(5, 'hook', 2, 'r2', '2026-01-01 00:00:01+00', 3, 'ok', 200, NULL, NULL), "
        "(2048, 'cmd', 1, 'r1', '2026-01-01 00:00:02+00', 1, 'dead', NULL, 'exit 2', 'oops')");
    old.commit();
    migrate(conn);
    pqxx::work tx(conn);
    const auto five = tx.exec(
        "SELECT attempt, relay_id, started_at = '2026-01-01 00:00:00+00'::timestamptz + (attempt - 1) * "
        "interval '1 second', duration_ms, outcome, coalesce(http_status, 0), coalesce(error, ''), "
        "coalesce(response_head, '') FROM pgrelay.attempts_of(5)");
    REQUIRE(five.size() == 2);
    CHECK(five[0][0].as<int>() == 1);
    CHECK(five[0][1].as<std::string>() == "r1");
    CHECK(five[0][2].as<bool>());
    CHECK(five[0][3].as<double>() == 12.5);
    CHECK(five[0][4].as<std::string>() == "retry");
    CHECK(five[0][5].as<int>() == 503);
    CHECK(five[0][6].as<std::string>() == "HTTP 503");
    CHECK(five[0][7].as<std::string>() == "busy");
    CHECK(five[1][0].as<int>() == 2);
    CHECK(five[1][1].as<std::string>() == "r2");
    CHECK(five[1][2].as<bool>());
    CHECK(five[1][4].as<std::string>() == "ok");
    CHECK(tx.exec1("SELECT pgrelay.event_state(2048) ->> 'status'")[0].as<std::string>() == "purged");
    // A relay of the earlier version, still running during the upgrade, records attempts
    // in the 0006 form; they land in the batches too.
    tx.exec(
        "SELECT pgrelay.record_attempts('[{\"e\": 7, \"h\": \"hook\", \"a\": 1, \"s\": 1767225600000000, "
        "\"d\": 2, \"o\": \"ok\", \"st\": 204}]'::jsonb, 'old-binary')");
    CHECK(tx.exec1("SELECT count(*) FROM pgrelay.attempts_of(7) WHERE relay_id = 'old-binary' AND http_status = 204")[0]
              .as<int>() == 1);
    CHECK(tx.exec1("SELECT to_regclass('pgrelay.attempts_0006') IS NULL")[0].as<bool>());
  }
  pqxx::nontransaction(admin).exec("DROP DATABASE " + name);
}

TEST_CASE("attempt retention deletes old attempts and never blocks the acks") {
  TestDb db;
  HttpReceiver rx;
  Config c = relay_config(db, webhook(rx.url()));
  c.attempts.retention_s = 3600;
  // Old attempts of events long gone, two days old, in batches of 64 (about 190 rows).
  db.exec(
      "SELECT pgrelay.record_attempt_batches(ARRAY[min(g) >> 10], ARRAY[min(s)], json_build_array(json_agg("
      "json_build_object('e', g, 'h', 'hook', 'a', 1, 's', s, 'd', 1, 'o', 'ok'))), 'old-relay') "
      "FROM generate_series(1000000, 1012000) g, "
      "LATERAL (SELECT (extract(epoch FROM now() - interval '2 days') * 1e6)::bigint AS s) t GROUP BY g >> 6");
  REQUIRE(db.scalar("SELECT count(*) FROM pgrelay.attempts WHERE relay_id = 'old-relay'") == 12001);
  // A sweep under way elsewhere: its transaction holds the retention lock and row locks on
  // old attempts, and stays open while the relay delivers and acks.
  auto other = db.connect();
  pqxx::work sweep(*other);
  CHECK(sweep.exec1("SELECT pgrelay.trim_attempts(3600, 100)")[0].as<int64_t>() == 100);
  Relay relay(c);
  RelayThread t(relay);
  db.exec("SELECT pgrelay.emit('orders.paid', jsonb_build_object('n', g)) FROM generate_series(1, 20) g");
  REQUIRE(
      eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.attempts WHERE relay_id <> 'old-relay'") == 20; },
                 seconds(10)));
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0);
  sweep.abort();
  // Now the relay's own sweep gets the lock and deletes every old attempt, in batches.
  REQUIRE(
      eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.attempts WHERE relay_id = 'old-relay'") == 0; },
                 seconds(15)));
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.attempts") == 20);
}

TEST_CASE("with the attempt log switched off no attempt is written") {
  TestDb db;
  HttpReceiver rx;
  rx.script({Reply::with_status(503), Reply::with_status(200)});
  Config c = relay_config(db, webhook(rx.url()));
  c.attempts.enabled = false;
  Relay relay(c);
  RelayThread t(relay);
  emit(db);
  REQUIRE(
      eventually([&] { return rx.request_count() == 2 && db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0; },
                 seconds(10)));
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.attempts") == 0);
}

TEST_CASE("a sql handler's attempts are logged in its ack transaction with the error it raised") {
  TestDb db;
  db.exec(R"sql(
CREATE SCHEMA app;
CREATE FUNCTION app.check(ev jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF (ev->'payload'->>'n')::int = 2 THEN RAISE EXCEPTION 'no room for %', ev->>'id'; END IF;
END $$;
)sql");
  HandlerConfig h;
  h.name = "ledger";
  h.type = "sql";
  h.function = "app.check";
  h.retry = RetryPolicy{2, 50, 100, 0.0};
  Relay relay(relay_config(db, h));
  RelayThread t(relay);
  db.exec("SELECT pgrelay.emit('orders.paid', jsonb_build_object('n', g)) FROM generate_series(1, 2) g");
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'dead'") == 1; },
                     seconds(10)));
  const auto rows = db.exec(
      "SELECT a.attempt, a.outcome, a.error FROM pgrelay.attempts a JOIN pgrelay.db_events e ON e.id = a.event_id "
      "ORDER BY a.started_at");
  REQUIRE(rows.size() == 2);  // the failing event's two attempts; the other's row is gone, its attempt stays
  CHECK(rows[0][1].as<std::string>() == "retry");
  CHECK(rows[1][1].as<std::string>() == "dead");
  CHECK(contains(rows[1][2].as<std::string>(), "no room for"));
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.attempts WHERE handler = 'ledger' AND outcome = 'ok'") == 1);
}
