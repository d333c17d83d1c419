// The pgrelay binary as users run it: exit codes, messages, signals, replicas,
// reconcile and dead letters, against a real PostgreSQL.
#include <doctest/doctest.h>
#include <signal.h>

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <thread>

#include "support/child_process.hpp"
#include "support/recording_handler.hpp"
#include "support/temp_config.hpp"
#include "support/test_db.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

bool contains(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

}  // namespace

TEST_CASE("a bad config gives exit code 2 and a message naming the key and the file") {
  TempConfig bad(R"({"relay": {"lease_ms": "long"}})");
  auto r = run_pgrelay({"-c", bad.path, "check-config"});
  CHECK(r.code == 2);
  CHECK(contains(r.err, "relay.lease_ms must be an integer, not a string"));
  CHECK(contains(r.err, bad.path));
  TempConfig unknown(R"({"handlers": {"h": {"type": "stdout", "retries": 3}}, "routes": []})");
  auto u = run_pgrelay({"-c", unknown.path, "run"});
  CHECK(u.code == 2);
  CHECK(contains(u.err, "handlers.h.retries is not a known key"));
  auto missing = run_pgrelay({"-c", "/nonexistent/pgrelay.json", "check-config"});
  CHECK(missing.code == 2);
  CHECK(contains(missing.err, "cannot read /nonexistent/pgrelay.json"));
  TempConfig good(R"({"handlers": {"p": {"type": "stdout"}}, "routes": [{"match": "a.*", "handlers": ["p"]}]})");
  auto ok = run_pgrelay({"-c", good.path, "check-config"});
  CHECK(ok.code == 0);
  CHECK(contains(ok.out, "config ok: 1 handlers, 1 routes"));
}

TEST_CASE("bad command-line input gives exit code 2 and says what is wrong") {
  auto r1 = run_pgrelay({"frobnicate"});
  CHECK(r1.code == 2);
  auto r2 = run_pgrelay({"reconcile", "--max-duration-s", "0"});
  CHECK(r2.code == 2);
  CHECK(contains(r2.err, "max-duration-s"));
  auto r3 = run_pgrelay({"emit"});
  CHECK(r3.code == 2);
  CHECK(contains(r3.err, "type is required"));
  auto r4 = run_pgrelay({"-d", "host=/nonexistent", "emit", "a", "[1]"});
  CHECK(r4.code == 2);
  CHECK(contains(r4.err, "payload must be a JSON object"));
  auto r5 = run_pgrelay({"-d", "host=/nonexistent", "emit", "a", "{bad"});
  CHECK(r5.code == 2);
  CHECK(contains(r5.err, "payload is not valid JSON at offset 1"));
  auto r6 = run_pgrelay({"dead", "retry"});
  CHECK(r6.code == 2);
  CHECK(contains(r6.err, "or pass --all"));
}

TEST_CASE("a value the database rejects is a usage error naming the rule, without PL/pgSQL's trace") {
  TestDb db;
  auto r = run_pgrelay({"-d", db.url(), "emit", "bad type!", "{}"});
  CHECK(r.code == 2);
  CHECK(contains(r.err, "violates check constraint \"db_events_type_valid\""));
  CHECK_FALSE(contains(r.err, "CONTEXT"));
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0);
}

TEST_CASE("a relay started in another wake mode than a running one warns, and status names the relay left behind") {
  TestDb db;
  TempConfig notify_cfg(R"({"relay": {"id": "old-notify", "wake": "notify"},
    "handlers": {"p": {"type": "stdout"}}, "routes": [{"match": "*", "handlers": ["p"]}]})");
  TempConfig poll_cfg(R"({"relay": {"id": "new-poll", "wake": "poll"},
    "handlers": {"p": {"type": "stdout"}}, "routes": [{"match": "*", "handlers": ["p"]}]})");
  ChildProcess a({PGRELAY_BIN, "-d", db.url(), "-c", notify_cfg.path, "run"});
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.relays WHERE id = 'old-notify'") == 1; },
                     seconds(10)));
  ChildProcess b({PGRELAY_BIN, "-d", db.url(), "-c", poll_cfg.path, "run"});
  CHECK(eventually([&] { return contains(b.err(), "another relay of this database uses another wake mode"); }, seconds(10)));
  CHECK(contains(b.err(), "\"relay\":\"old-notify\""));
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.relays") == 2; }, seconds(10)));
  auto st = run_pgrelay({"-d", db.url(), "status"});
  CHECK(contains(st.out, "warning: old-notify runs wake=notify but producers follow wake=poll"));
  CHECK_FALSE(contains(st.out, "warning: new-poll"));
  CHECK_FALSE(contains(a.err(), "another wake mode"));  // the first relay had no one to warn about
}

TEST_CASE("an unreachable database is a runtime failure with a hint, exit code 1") {
  auto r = run_pgrelay({"-d", "host=127.0.0.1 port=1 connect_timeout=2", "status"});
  CHECK(r.code == 1);
  CHECK(contains(r.err, "cannot reach the database"));
}

TEST_CASE("every subcommand's help describes it and exits 0") {
  for (const char* cmd : {"migrate", "run", "reconcile", "status", "emit", "track", "untrack", "dead", "check-config"}) {
    auto r = run_pgrelay({cmd, "--help"});
    CHECK_MESSAGE(r.code == 0, cmd);
    CHECK_MESSAGE(r.out.size() > 100, cmd);
  }
  CHECK(contains(run_pgrelay({"--help"}).out, "Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config"));
}

TEST_CASE("emit, track and untrack from the command line write what they say") {
  TestDb db;
  auto e = run_pgrelay({"-d", db.url(), "emit", "user.created", R"({"id": 7})", "--key", "user:7"});
  REQUIRE(e.code == 0);
  CHECK(e.out == "1\n");
  db.exec("CREATE TABLE items (id int PRIMARY KEY, name text, secret text)");
  auto t = run_pgrelay({"-d", db.url(), "track", "items", "--exclude", "secret", "--operations", "insert"});
  REQUIRE(t.code == 0);
  db.exec("INSERT INTO items VALUES (1, 'a', 'hidden'); UPDATE items SET name = 'b'");
  auto r = db.exec("SELECT event_type, key, payload::text FROM pgrelay.db_events ORDER BY id");
  REQUIRE(r.size() == 2);
  CHECK(r[1][0].as<std::string>() == "items.insert");
  CHECK(!contains(r[1][2].as<std::string>(), "hidden"));
  auto bad = run_pgrelay({"-d", db.url(), "track", "no_such_table"});
  CHECK(bad.code == 2);
  CHECK(contains(bad.err, "no_such_table"));
  auto u = run_pgrelay({"-d", db.url(), "untrack", "items"});
  CHECK(u.code == 0);
  CHECK(contains(u.out, "no longer captured"));
}

TEST_CASE("SIGTERM mid-burst loses nothing: every event is finished or pending, none left processing") {
  TestDb db;
  TempConfig cfg(R"({"relay": {"lease_ms": 30000, "shutdown_timeout_ms": 3000},
    "handlers": {"slow": {"type": "command", "command": ["sh", "-c", "cat > /dev/null; sleep 0.05"], "concurrency": 4}},
    "routes": [{"match": "*", "handlers": ["slow"]}]})");
  db.exec("SELECT pgrelay.emit('e', jsonb_build_object('n', g)) FROM generate_series(1, 400) g");
  ChildProcess relay({PGRELAY_BIN, "-d", db.url(), "-c", cfg.path, "run"});
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") < 380; }, seconds(20)));
  relay.signal(SIGTERM);
  auto code = relay.wait(seconds(10));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  const int64_t left = db.scalar("SELECT count(*) FROM pgrelay.db_events");
  CHECK(left > 0);  // it really stopped mid-burst
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status <> 'pending'") == 0);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE attempts > 0") == 0);  // released, not spent
  CHECK(contains(relay.err(), "relay stopped"));
}

TEST_CASE("a relay killed with SIGKILL mid-batch: another relay delivers its events within lease + 1 s") {
  TestDb db;
  TempConfig cfg(R"({"relay": {"id": "doomed", "lease_ms": 2000},
    "handlers": {"slow": {"type": "command", "command": ["sh", "-c", "cat > /dev/null; sleep 5"], "concurrency": 8,
                          "timeout_ms": 7000}},
    "routes": [{"match": "*", "handlers": ["slow"]}]})");
  db.exec("SELECT pgrelay.emit('e', jsonb_build_object('n', g), 'k' || (g % 10)) FROM generate_series(1, 100) g");
  ChildProcess doomed({PGRELAY_BIN, "-d", db.url(), "-c", cfg.path, "run"});
  // It holds every key: each key's head and the run behind it.
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE lease_owner = 'doomed'") == 100; },
                     seconds(10)));
  Config c = test_config(db.url());
  c.relay.id = "survivor";
  c.relay.lease_ms = 2000;
  Relay survivor(c);
  RecordingHandler* rec = add_recorder(survivor, "*", "fast");
  RelayThread t(survivor);
  std::this_thread::sleep_for(milliseconds(300));
  CHECK(rec->count() == 0);  // the keys' heads are leased by the doomed relay
  doomed.signal(SIGKILL);
  const auto killed_at = std::chrono::steady_clock::now();
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0; }, seconds(15)));
  const auto took = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - killed_at).count();
  t.stop();
  MESSAGE("recovered in " << took << " ms");
  CHECK(took <= 3000 + 500);  // lease + 1 s, plus time to deliver the 100 events
  CHECK(rec->count() == 100);
  // Every key's head and its run were leased by the doomed relay (the head of each is
  // reclaimed as it expires, its run behind it).
  CHECK(survivor.stats().lease_expiries == 100);
}

TEST_CASE("reconcile delivers the backlog and exits 0, or 3 when something is dead") {
  TestDb db;
  TempConfig cfg(R"({"handlers": {"ok": {"type": "command", "command": ["sh", "-c", "cat > /dev/null"]},
                                  "no": {"type": "command", "command": ["false"], "retry": {"max_attempts": 1}}},
    "routes": [{"match": "good.*", "handlers": ["ok"]}, {"match": "bad", "handlers": ["no"]}]})");
  db.exec("SELECT pgrelay.emit('good.e', '{}') FROM generate_series(1, 30)");
  auto clean = run_pgrelay({"-d", db.url(), "-c", cfg.path, "reconcile"});
  CHECK(clean.code == 0);
  CHECK(contains(clean.out, "reconcile: delivered 30, retried 0, dead-lettered 0"));
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0);

  db.exec("SELECT pgrelay.emit('good.e', '{}'), pgrelay.emit('bad', '{}')");
  auto dirty = run_pgrelay({"-d", db.url(), "-c", cfg.path, "reconcile", "--json"});
  CHECK(dirty.code == 3);
  CHECK(contains(dirty.out, "\"delivered\":1,\"retried\":0,\"dead_now\":1,\"dead_total\":1,\"failing\":0,\"pending\":0"));
  CHECK(contains(dirty.out, "\"exit_code\":3"));
}

TEST_CASE("reconcile reports pending events older than the threshold as stuck") {
  TestDb db;
  TempConfig cfg(R"({"handlers": {"ok": {"type": "stdout"}}, "routes": [{"match": "x", "handlers": ["ok"]}]})");
  db.exec("SELECT pgrelay.emit('unrouted', '{}')");
  db.exec("UPDATE pgrelay.db_events SET created_at = now() - interval '2 hours'");
  auto r = run_pgrelay({"-d", db.url(), "-c", cfg.path, "reconcile", "--stuck-after-s", "3600"});
  CHECK(r.code == 3);
  CHECK(contains(r.out, "problem: pending events older than 3600 s"));
}

TEST_CASE("dead letters can be listed, retried and purged by filter") {
  TestDb db;
  db.exec("SELECT pgrelay.emit('mail.send', jsonb_build_object('n', g), 'user:' || g) FROM generate_series(1, 3) g");
  db.exec("SELECT pgrelay.emit('sms.send', '{}')");
  db.exec("UPDATE pgrelay.db_events SET status = 'dead', attempts = 5, last_error = "
          "CASE WHEN event_type = 'sms.send' THEN 'HTTP 410' ELSE 'timed out' END, finished_at = now()");
  auto list = run_pgrelay({"-d", db.url(), "dead", "list", "--type", "mail.*", "--json"});
  CHECK(list.code == 0);
  CHECK(std::count(list.out.begin(), list.out.end(), '\n') == 3);
  CHECK(contains(list.out, "\"last_error\":\"timed out\""));
  auto by_err = run_pgrelay({"-d", db.url(), "dead", "list", "--error", "410"});
  CHECK(contains(by_err.out, "sms.send"));
  CHECK(!contains(by_err.out, "mail.send"));
  auto retry = run_pgrelay({"-d", db.url(), "dead", "retry", "--key", "user:2"});
  CHECK(retry.code == 0);
  CHECK(contains(retry.out, "1 events pending again"));
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'pending' AND attempts = 0 AND key = 'user:2'") == 1);
  auto dry = run_pgrelay({"-d", db.url(), "dead", "purge", "--type", "mail.*"});
  CHECK(dry.code == 2);
  CHECK(contains(dry.out, "would delete 2 events"));
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 4);
  auto purge = run_pgrelay({"-d", db.url(), "dead", "purge", "--type", "mail.*", "--yes"});
  CHECK(purge.code == 0);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 2);
  auto sql_inj = run_pgrelay({"-d", db.url(), "dead", "purge", "--type", "x' OR '1'='1", "--yes"});
  CHECK(sql_inj.code == 0);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 2);
}
