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

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

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

TEST_CASE("emit refuses a bad event type before touching the database, naming the rule, and spends no id") {
  TestDb db;
  auto r = run_pgrelay({"-d", db.url(), "emit", "bad type!", "{}"});
  CHECK(r.code == 2);
  CHECK(contains(r.err, "type \"bad type!\" is not an event type: letters, digits and _ . : - only"));
  CHECK_FALSE(contains(r.err, "violates check constraint"));
  // No database is needed to say so.
  CHECK(run_pgrelay({"-d", "host=/nonexistent", "emit", "bad type!", "{}"}).code == 2);
  CHECK(run_pgrelay({"-d", "host=/nonexistent", "emit", "a.b", "{}", "--key", std::string(1001, 'k')})
            .err.find("--key is longer than 1000 characters") != std::string::npos);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0);
  const auto good = run_pgrelay({"-d", db.url(), "emit", "good.type", "{}"});
  CHECK(good.out == "1\n");  // the refused one took no id
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
  CHECK(eventually([&] { return contains(b.err(), "another relay of this database uses another wake mode"); },
                   seconds(10)));
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

TEST_CASE("-c and -d are accepted after the subcommand too, and each subcommand's help lists them") {
  TestDb db;
  TempConfig cfg(R"({"handlers": {"p": {"type": "stdout"}}, "routes": [{"match": "a.*", "handlers": ["p"]}]})");
  auto after = run_pgrelay({"status", "-d", db.url()});
  CHECK(after.code == 0);
  CHECK(contains(after.out, "events: 0 pending"));
  CHECK(run_pgrelay({"dead", "list", "--database", db.url()}).code == 0);
  CHECK(run_pgrelay({"emit", "a.b", "{}", "-d", db.url()}).code == 0);
  CHECK(run_pgrelay({"check-config", "-c", cfg.path}).code == 0);
  CHECK(run_pgrelay({"-d", db.url(), "pause", "a.b", "-c", cfg.path}).code == 0);
  for (const std::vector<std::string>& cmd : std::vector<std::vector<std::string>>{
           {"status"}, {"run"}, {"emit"}, {"dead", "list"}, {"pause"}, {"replay"}, {"check-config"}, {"migrate"}}) {
    std::vector<std::string> args = cmd;
    args.push_back("--help");
    const auto help = run_pgrelay(args);
    CAPTURE(cmd.front());
    CHECK(help.code == 0);
    CHECK(contains(help.out, "-c,--config"));
    CHECK(contains(help.out, "-d,--database"));
  }
}

TEST_CASE("no error ever echoes the password of a connection string") {
  const std::string url = "postgresql://app:hunter2@127.0.0.1:1/app?connect_timeout=2";
  const std::vector<std::vector<std::string>> commands = {
      {"status", "--bogus=" + url},  // CLI11 quotes what it did not expect
      {"status", "-d", url, "surplus"},
      {"-d", url, "status"},  // unreachable database
      {"-d", "host=127.0.0.1 port=1 password=hunter2 connect_timeout=2", "status"},
      {"-d", "host=127.0.0.1 port=1 password='hunter2 x' connect_timeout=2", "dead", "list"},
  };
  for (const auto& args : commands) {
    const auto r = run_pgrelay(args);
    CAPTURE(r.err);
    CHECK(r.code != 0);
    CHECK_FALSE(contains(r.out + r.err, "hunter2"));
  }
  CHECK(contains(run_pgrelay({"status", "--bogus=" + url}).err, "postgresql://app:***@127.0.0.1:1/app"));
}

TEST_CASE("read-only commands run with a config whose secret variables are unset, and run still needs them") {
  TestDb db;
  TempConfig cfg(R"({"admin": {"listen": "127.0.0.1:0", "token_env": "UX_ADMIN_TOKEN"},
    "handlers": {"hook": {"type": "webhook", "url": "http://127.0.0.1:1/x", "secret_env": "UX_HOOK_SECRET"}},
    "routes": [{"match": "*", "handlers": ["hook"]}]})");
  for (const std::vector<std::string>& cmd : std::vector<std::vector<std::string>>{
           {"dead", "list"}, {"status"}, {"emit", "a.b", "{}"}, {"replay", "--all", "--dry-run"}}) {
    std::vector<std::string> args = {"-c", cfg.path, "-d", db.url()};
    args.insert(args.end(), cmd.begin(), cmd.end());
    const auto r = run_pgrelay(args);
    CAPTURE(cmd.front());
    CAPTURE(r.err);
    CHECK(r.code == 0);
  }
  const auto run = run_pgrelay({"-c", cfg.path, "-d", db.url(), "run"});
  CHECK(run.code == 2);
  CHECK(contains(run.err, "admin.token_env names UX_ADMIN_TOKEN, which is not set"));
  CHECK(run_pgrelay({"-c", cfg.path, "check-config"}).code == 2);
}

TEST_CASE("check-config refuses exactly what run refuses, with the same message") {
  TestDb db;
  const std::vector<std::pair<std::string, std::string>> refused = {
      {R"({"handlers": {"p": {"type": "stdout"}}})", "config: routes is empty: no event would be delivered"},
      {R"({"handlers": {"h": {"type": "webhook", "url": "http://x/", "secret": "whsec_not base64!"}},
           "routes": [{"match": "*", "handlers": ["h"]}]})",
       "handlers.h.secret starts with \"whsec_\" but the rest is not base64"},
      {R"({"handlers": {"h": {"type": "webhook", "url": "http://x/", "secret": "whsec_"}},
           "routes": [{"match": "*", "handlers": ["h"]}]})",
       "handlers.h.secret is \"whsec_\" with no key after it"},
      {R"({"handlers": {"h": {"type": "webhook", "url": "http://[::1/x"}}, "routes": [{"match": "*", "handlers": ["h"]}]})",
       "handlers.h.url"},
      {R"({"handlers": {"h": {"type": "webhook", "url": "https://x/", "ca_file": "/nonexistent/ca.pem"}},
           "routes": [{"match": "*", "handlers": ["h"]}]})",
       "handlers.h.ca_file"},
  };
  for (const auto& [json, message] : refused) {
    TempConfig cfg(json);
    const auto check = run_pgrelay({"-c", cfg.path, "check-config"});
    const auto run = run_pgrelay({"-c", cfg.path, "-d", db.url(), "run"});
    CAPTURE(json);
    CHECK(check.code == 2);
    CHECK(run.code == 2);
    CHECK(contains(check.err, message));
    CHECK(contains(run.err, message));
  }
  // An unpadded whsec_ secret (as some providers issue it) is accepted by both.
  TempConfig unpadded(
      R"({"relay": {"wake": "poll"}, "handlers": {"h": {"type": "webhook", "url": "http://127.0.0.1:1/x",
    "secret": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD+r6DNVIHYb4"}}, "routes": [{"match": "zz", "handlers": ["h"]}]})");
  CHECK(run_pgrelay({"-c", unpadded.path, "check-config"}).code == 0);
  ChildProcess relay({PGRELAY_BIN, "-c", unpadded.path, "-d", db.url(), "run"});
  CHECK(eventually([&] { return contains(relay.err(), "relay started"); }, seconds(10)));
  relay.signal(SIGTERM);
  CHECK(relay.wait(seconds(10)) == 0);
}

TEST_CASE("every command on a database that is not migrated exits 2 and says to run pgrelay migrate") {
  TestDb db;
  db.exec("DROP SCHEMA pgrelay CASCADE");
  db.exec("CREATE TABLE plain (id int PRIMARY KEY)");
  TempConfig cfg(R"({"handlers": {"p": {"type": "stdout"}}, "routes": [{"match": "*", "handlers": ["p"]}]})");
  const std::vector<std::vector<std::string>> commands = {
      {"status"},          {"emit", "a.b", "{}"},      {"track", "plain"},           {"untrack", "plain"},
      {"dead", "list"},    {"dead", "retry", "--all"}, {"pause", "a.b", "--force"},  {"resume", "a.b"},
      {"replay", "--all"}, {"-c", cfg.path, "run"},    {"-c", cfg.path, "reconcile"}};
  for (const auto& cmd : commands) {
    std::vector<std::string> args = {"-d", db.url()};
    args.insert(args.end(), cmd.begin(), cmd.end());
    const auto r = run_pgrelay(args);
    CAPTURE(r.err);
    CHECK(r.code == 2);
    CHECK(contains(r.err, "is not migrated"));
    CHECK(contains(r.err, "run `pgrelay migrate`"));
  }
  CHECK(run_pgrelay({"-d", db.url(), "migrate"}).code == 0);
  CHECK(run_pgrelay({"-d", db.url(), "status"}).code == 0);
}

TEST_CASE("track of a table without a primary key asks for --key or --no-key") {
  TestDb db;
  db.exec("CREATE TABLE logs (at timestamptz, line text, host text)");
  const auto r = run_pgrelay({"-d", db.url(), "track", "logs"});
  CHECK(r.code == 2);
  CHECK(contains(r.err, "logs has no primary key"));
  CHECK(contains(r.err, "--key"));
  CHECK(contains(r.err, "--no-key"));
  CHECK(db.scalar("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'logs'::regclass AND NOT tgisinternal") == 0);
  REQUIRE(run_pgrelay({"-d", db.url(), "track", "logs", "--key", "host"}).code == 0);
  db.exec("INSERT INTO logs VALUES (now(), 'a', 'web-1')");
  CHECK(db.exec("SELECT key FROM pgrelay.db_events")[0][0].as<std::string>() == "logs:web-1");
  REQUIRE(run_pgrelay({"-d", db.url(), "untrack", "logs"}).code == 0);
  REQUIRE(run_pgrelay({"-d", db.url(), "track", "logs", "--no-key"}).code == 0);
  db.exec("INSERT INTO logs VALUES (now(), 'b', 'web-2')");
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE key IS NULL") == 1);
}

TEST_CASE("an empty dead list says so, and with --json it prints no line") {
  TestDb db;
  const auto text = run_pgrelay({"-d", db.url(), "dead", "list"});
  CHECK(text.code == 0);
  CHECK(text.out == "dead list: no dead events\n");
  const auto filtered = run_pgrelay({"-d", db.url(), "dead", "list", "--type", "a.*"});
  CHECK(filtered.out == "dead list: no dead events match the filter\n");
  const auto json = run_pgrelay({"-d", db.url(), "dead", "list", "--json"});
  CHECK(json.code == 0);
  CHECK(json.out.empty());
  CHECK(contains(json.err, "no dead events"));
}

TEST_CASE("a JSON syntax error in a config file names its line and column") {
  TempConfig bad("{\n  \"relay\": {\n    \"lease_ms\": 1000\n    \"batch_size\": 10\n  }\n}\n");
  const auto r = run_pgrelay({"-c", bad.path, "check-config"});
  CHECK(r.code == 2);
  CHECK(contains(r.err, "invalid JSON at line 4, column 5"));
  CHECK(contains(r.err, bad.path));
}

TEST_CASE("a second SIGTERM within a second of the first, as coreutils timeout sends, still shuts down cleanly") {
  TestDb db;
  TempConfig cfg(R"({"relay": {"shutdown_timeout_ms": 5000},
    "handlers": {"slow": {"type": "command", "command": ["sh", "-c", "cat > /dev/null; sleep 1"], "concurrency": 4}},
    "routes": [{"match": "*", "handlers": ["slow"]}]})");
  db.exec("SELECT pgrelay.emit('e', jsonb_build_object('n', g)) FROM generate_series(1, 8) g");
  {
    ChildProcess relay({PGRELAY_BIN, "-d", db.url(), "-c", cfg.path, "run"});
    REQUIRE(
        eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'processing'") > 0; },
                   seconds(10)));
    relay.signal(SIGTERM);
    std::this_thread::sleep_for(milliseconds(20));
    relay.signal(SIGTERM);
    CHECK(relay.wait(seconds(15)) == 0);
    CHECK_FALSE(contains(relay.err(), "second signal"));
    CHECK(contains(relay.err(), "relay stopped"));
  }
  // The real thing: timeout(1) signals the relay, then its process group.
  db.exec("SELECT pgrelay.emit('e', jsonb_build_object('n', g)) FROM generate_series(1, 8) g");
  ChildProcess timed(
      {"timeout", "--preserve-status", "-s", "TERM", "2", PGRELAY_BIN, "-d", db.url(), "-c", cfg.path, "run"});
  CHECK(timed.wait(seconds(20)) == 0);
  CHECK_FALSE(contains(timed.err(), "second signal"));
  // A second signal a while later is impatience: exit at once.
  db.exec("SELECT pgrelay.emit('e', jsonb_build_object('n', g)) FROM generate_series(1, 40) g");
  ChildProcess impatient({PGRELAY_BIN, "-d", db.url(), "-c", cfg.path, "run"});
  REQUIRE(
      eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'processing'") > 0; },
                 seconds(10)));
  impatient.signal(SIGTERM);
  std::this_thread::sleep_for(milliseconds(1300));
  impatient.signal(SIGTERM);
  CHECK(impatient.wait(seconds(5)) == 1);
  CHECK(contains(impatient.err(), "second signal"));
}

TEST_CASE("pause takes prefix.* patterns and stores them as written, and refuses an unknown exact type unless forced") {
  TestDb db;
  db.exec("SELECT pgrelay.emit('user.signed_up', '{}'), pgrelay.emit('orders.paid', '{}')");
  TempConfig cfg(R"({"handlers": {"p": {"type": "stdout"}}, "routes": [{"match": "billing.*", "handlers": ["p"]},
    {"match": "ship.sent", "handlers": ["p"]}], "event_types": {"invoice.sent": {}}})");
  auto p = run_pgrelay({"-d", db.url(), "pause", "user.*", "--reason", "mailer down"});
  CHECK(p.code == 0);
  CHECK(contains(p.out, "paused user.* (every type below user.)"));
  CHECK(db.exec("SELECT event_type FROM pgrelay.paused_types")[0][0].as<std::string>() == "user.*");
  const auto unknown = run_pgrelay({"-d", db.url(), "-c", cfg.path, "pause", "nosuch.type"});
  CHECK(unknown.code == 2);
  CHECK(contains(unknown.err, "\"nosuch.type\" is not a known event type"));
  for (const char* known : {"orders.paid", "user.signed_up", "billing.*", "ship.sent", "invoice.sent"}) {
    CHECK(contains(unknown.err, known));
  }
  CHECK(contains(unknown.err, "--force"));
  // Types the config routes (by name or prefix) or declares are known before any event has them.
  for (const char* t : {"billing.charged", "ship.sent", "invoice.sent"}) {
    CHECK(run_pgrelay({"-d", db.url(), "-c", cfg.path, "pause", t}).code == 0);
  }
  CHECK(run_pgrelay({"-d", db.url(), "pause", "nosuch.type", "--force"}).code == 0);
  CHECK(run_pgrelay({"-d", db.url(), "pause", "*"}).code == 2);
  CHECK(run_pgrelay({"-d", db.url(), "pause", "bad type.*"}).code == 2);
  const auto st = run_pgrelay({"-d", db.url(), "status"});
  CHECK(contains(st.out, "user.* (every type below user.) since"));
  CHECK(contains(run_pgrelay({"-d", db.url(), "status", "--json"}).out, "{\"type\":\"user.*\",\"pattern\":true"));
  const auto covered = run_pgrelay({"-d", db.url(), "resume", "user.signed_up"});
  CHECK(covered.code == 2);
  CHECK(contains(covered.err, "user.signed_up is still paused by user.*"));
  CHECK(run_pgrelay({"-d", db.url(), "resume", "user.*"}).code == 0);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.paused_types WHERE event_type = 'user.*'") == 0);
}

TEST_CASE("a webhook pool smaller than its concurrency is warned about by check-config and at the start of run") {
  TestDb db;
  TempConfig cfg(R"({"relay": {"wake": "poll"}, "log": {"format": "json"},
    "handlers": {"billing": {"type": "webhook", "url": "http://127.0.0.1:1/x", "concurrency": 64, "pool_size": 8},
                 "follows": {"type": "webhook", "url": "http://127.0.0.1:1/y", "concurrency": 64}},
    "routes": [{"match": "zz", "handlers": ["billing", "follows"]}]})");
  const std::string warning =
      "handlers.billing.pool_size 8 is below its concurrency 64: at most 8 requests are in flight";
  const auto check = run_pgrelay({"-c", cfg.path, "check-config"});
  CHECK(check.code == 0);
  CHECK(contains(check.out, "warning: " + warning));
  CHECK_FALSE(contains(check.out, "handlers.follows"));
  ChildProcess relay({PGRELAY_BIN, "-c", cfg.path, "-d", db.url(), "run"});
  CHECK(eventually([&] { return contains(relay.err(), "relay started"); }, seconds(10)));
  CHECK(contains(relay.err(), "\"level\":\"warn\",\"msg\":\"" + warning));
  relay.signal(SIGTERM);
  CHECK(relay.wait(seconds(10)) == 0);
}

TEST_CASE("every subcommand's help describes it and exits 0") {
  // The top-level help lists each subcommand with its description: each
  // subcommand's own help must show that description and its own usage line.
  const std::string top = run_pgrelay({"--help"}).out;
  CHECK(contains(top, "Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config"));
  for (const std::string cmd : {"migrate", "run", "reconcile", "status", "emit", "track", "untrack", "dead",
                                "check-config", "pause", "resume", "replay", "events", "wait"}) {
    CAPTURE(cmd);
    const size_t at = top.find("\n  " + cmd + " ");
    REQUIRE(at != std::string::npos);
    const size_t line_end = top.find('\n', at + 1);
    std::string description = top.substr(at + 3 + cmd.size(), line_end - at - 3 - cmd.size());
    description.erase(0, description.find_first_not_of(' '));
    description = description.substr(0, 40);  // the start of it: long ones wrap differently in the two helps
    REQUIRE(description.size() >= 20);
    auto r = run_pgrelay({cmd, "--help"});
    CHECK(r.code == 0);
    CHECK(contains(r.out, description));
    const size_t usage = r.out.find("Usage: ");
    REQUIRE(usage != std::string::npos);
    CHECK(contains(r.out.substr(usage, r.out.find('\n', usage) - usage),
                   " " + cmd + " "));  // its own usage, not the top level's
  }
}

TEST_CASE("emit, track and untrack from the command line write what they say") {
  TestDb db;
  auto e = run_pgrelay({"-d", db.url(), "emit", "user.created", R"({"id": 7})", "--key", "user:7"});
  REQUIRE(e.code == 0);
  db.exec("CREATE TABLE items (id int PRIMARY KEY, name text, secret text)");
  auto t = run_pgrelay({"-d", db.url(), "track", "items", "--exclude", "secret", "--operations", "insert"});
  REQUIRE(t.code == 0);
  db.exec("INSERT INTO items VALUES (1, 'a', 'hidden'); UPDATE items SET name = 'b'");
  auto r =
      db.exec("SELECT id, event_type, key, payload::text, payload->'new'->>'name' FROM pgrelay.db_events ORDER BY id");
  REQUIRE(r.size() == 2);  // the update is not captured: --operations insert
  // emit printed the id of the row it wrote, with its type, key and payload.
  CHECK(e.out == r[0][0].as<std::string>() + "\n");
  CHECK(r[0][1].as<std::string>() == "user.created");
  CHECK(r[0][2].as<std::string>() == "user:7");
  CHECK(r[0][3].as<std::string>() == R"({"id": 7})");
  CHECK(r[1][1].as<std::string>() == "items.insert");
  CHECK(r[1][2].as<std::string>() == "items:1");
  CHECK(r[1][4].as<std::string>() == "a");
  CHECK(!contains(r[1][3].as<std::string>(), "hidden"));
  CHECK(!contains(r[1][3].as<std::string>(), "secret"));
  auto bad = run_pgrelay({"-d", db.url(), "track", "no_such_table"});
  CHECK(bad.code == 2);
  CHECK(contains(bad.err, "no_such_table"));
  auto u = run_pgrelay({"-d", db.url(), "untrack", "items"});
  CHECK(u.code == 0);
  CHECK(contains(u.out, "no longer captured"));
  // Capture stopped: a new row writes no event, and the events already written stay.
  db.exec("INSERT INTO items VALUES (2, 'c', 'hidden')");
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 2);
  CHECK(db.scalar("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass AND NOT tgisinternal") == 0);
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
  REQUIRE(eventually(
      [&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE lease_owner = 'doomed'") == 100; },
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
  CHECK(
      contains(dirty.out, "\"delivered\":1,\"retried\":0,\"dead_now\":1,\"dead_total\":1,\"failing\":0,\"pending\":0"));
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
  db.exec(
      "UPDATE pgrelay.db_events SET status = 'dead', attempts = 5, last_error = "
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
  CHECK(db.scalar(
            "SELECT count(*) FROM pgrelay.db_events WHERE status = 'pending' AND attempts = 0 AND key = 'user:2'") ==
        1);
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
