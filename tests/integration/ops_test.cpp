// Operations end to end: metrics against the database, pause and resume,
// replay (dry run and real), retention of finished events.
#include <doctest/doctest.h>

#include <atomic>
#include <set>
#include <thread>

#include "support/child_process.hpp"
#include "support/http_get.hpp"
#include "support/http_receiver.hpp"
#include "support/recording_handler.hpp"
#include "support/test_db.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

bool has(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

// Delivery count of one event id in a recording.
size_t deliveries_of(const RecordingHandler& h, int64_t id) {
  size_t n = 0;
  for (const auto& d : h.deliveries()) n += d.id == id;
  return n;
}

}  // namespace

TEST_CASE("metrics values match the database after a known workload") {
  TestDb db;
  // A webhook whose receiver always fails: its breaker opens after two failures
  // and must show as a sample, not only as the metric's TYPE line.
  HttpReceiver failing;
  failing.respond_with([](const ReceivedRequest&) { return Reply::with_status(503, "down"); });
  HandlerConfig hook;
  hook.name = "hook";
  hook.type = "webhook";
  hook.url = failing.url();
  hook.timeout_ms = 2000;
  hook.retry = RetryPolicy{10, 3600000, 3600000, 0.0};  // the next attempt is an hour away: never due in this test
  hook.breaker.failures = 2;
  hook.breaker.cooldown_ms = 3600000;
  Config c = test_config(db.url());
  c.admin.listen = "127.0.0.1:0";
  c.relay.wake = "notify";
  c.handlers.push_back(hook);
  c.routes.push_back(Route{"m.hook", {"hook"}});
  Relay relay(c);
  auto ok = std::make_unique<RecordingHandler>();
  auto bad = std::make_unique<RecordingHandler>([](const Event&) { return Outcome::dead("rejected by test"); });
  RecordingHandler* okp = ok.get();
  RecordingHandler* badp = bad.get();
  relay.add_handler("ok", std::move(ok));
  relay.add_handler("bad", std::move(bad));
  relay.add_route("m.good", {"ok"});
  relay.add_route("m.bad", {"bad"});
  RelayThread t(relay);
  REQUIRE(eventually([&] { return relay.admin_port() != 0; }, seconds(10)));
  const uint16_t port = relay.admin_port();

  db.exec("SELECT pgrelay.emit('m.good', '{}') FROM generate_series(1, 7)");
  db.exec("SELECT pgrelay.emit('m.bad', '{}') FROM generate_series(1, 3)");
  db.exec("SELECT pgrelay.emit('m.unrouted', '{}') FROM generate_series(1, 4)");
  db.exec("SELECT pgrelay.emit('m.hook', '{}') FROM generate_series(1, 2)");
  REQUIRE(eventually([&] { return okp->count() == 7 && badp->count() == 3; }, seconds(20)));
  REQUIRE(eventually(
      [&] {
        return db.scalar(
                   "SELECT count(*) FROM pgrelay.db_events WHERE attempts = 1 AND "
                   "event_type = 'm.hook' AND status = 'pending'") == 2;
      },
      seconds(20)));
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'dead'") == 3; },
                     seconds(10)));
  // The unrouted type is set aside: not a backlog of this (or any) relay.
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'unrouted'") == 4; },
                     seconds(10)));
  const int64_t due = db.scalar(
      "SELECT count(*) FROM pgrelay.db_events WHERE status IN ('pending', 'processing') AND next_attempt_at <= now()");
  CHECK(due == 0);

  std::string text;
  // Gauges are sampled every few seconds, not per scrape: wait for a sample after the workload.
  REQUIRE(eventually(
      [&] {
        text = http_get(port, "/metrics").body;
        return prom_value(text, "pgrelay_dead_events") == 3 && prom_value(text, "pgrelay_backlog_events") == due;
      },
      seconds(10)));
  CHECK(prom_value(text, R"(pgrelay_deliveries_delivered_total{event_type="m.good",handler="ok"})") == 7);
  CHECK(prom_value(text, R"(pgrelay_deliveries_dead_total{event_type="m.bad",handler="bad"})") == 3);
  CHECK(prom_value(text, R"(pgrelay_deliveries_retried_total{event_type="m.good",handler="ok"})") == 0);
  CHECK(prom_value(text, R"(pgrelay_events_total{result="delivered"})") == 7);
  CHECK(prom_value(text, R"(pgrelay_events_total{result="dead"})") == 3);
  CHECK(prom_value(text, R"(pgrelay_handler_latency_seconds_count{handler="ok"})") == 7);
  CHECK(prom_value(text, R"(pgrelay_handler_latency_seconds_bucket{handler="ok",le="+Inf"})") == 7);
  CHECK(prom_value(text, R"(pgrelay_events_by_type{event_type="m.unrouted",status="unrouted"})") == 4);
  CHECK(prom_value(text, "pgrelay_unrouted_events") == 4);
  CHECK(prom_value(text, R"(pgrelay_events_by_type{event_type="m.bad",status="dead"})") == 3);
  CHECK(prom_value(text, "pgrelay_claim_batch_size_sum") >= 10);
  CHECK(prom_value(text, "pgrelay_listener_connected") == 1);
  CHECK(prom_value(text, "pgrelay_lease_expiries_total") == 0);
  CHECK(prom_value(text, "pgrelay_database_up") == 1);
  CHECK(has(text, "# TYPE pgrelay_handler_latency_seconds histogram"));
  CHECK(has(text, "# TYPE pgrelay_circuit_breaker_state gauge"));
  const std::string breaker =
      R"({handler="hook",destination="http://127.0.0.1:)" + std::to_string(failing.port()) + R"("})";
  CHECK(prom_value(text, "pgrelay_circuit_breaker_state" + breaker) == 2);
  CHECK(prom_value(text, "pgrelay_circuit_breaker_consecutive_failures" + breaker) == 2);
  CHECK(prom_value(text, R"(pgrelay_deliveries_retried_total{event_type="m.hook",handler="hook"})") == 2);
  const auto status = http_get(port, "/status.json");
  CHECK(status.status == 200);
  CHECK(has(status.body, "\"backlog\":0"));
  CHECK(has(status.body, "\"unrouted\":4"));
  CHECK(has(status.body, "\"dead\":3"));
  CHECK(has(status.body, "{\"name\":\"hook\",\"delivered\":0,\"retried\":2"));
  CHECK(has(status.body, "\"breakers\":[{\"destination\":\"http://127.0.0.1:" + std::to_string(failing.port()) +
                             "\",\"state\":\"open\",\"consecutive_failures\":2}]"));
}

TEST_CASE(
    "gauges of processing, due, blocked, scheduled and paused events, the oldest ages and lease expiries match a known "
    "state") {
  TestDb db;
  // Two events whose lease ran out under a relay that is gone: the relay takes them over.
  db.exec(
      "INSERT INTO pgrelay.db_events (event_type, payload, status, attempts, next_attempt_at, lease_owner, "
      "claim_token) "
      "SELECT 'g.ok', '{}', 'processing', 1, now() - interval '1 second', 'gone', 1 FROM generate_series(1, 2)");
  Config c = test_config(db.url());
  c.admin.listen = "127.0.0.1:0";
  c.relay.wake = "notify";
  c.relay.max_in_flight = 2;  // two held deliveries fill the relay: what comes after them stays due
  Relay relay(c);
  std::atomic<bool> released{false};
  auto held = std::make_unique<RecordingHandler>(
      [&released](const Event&) {
        while (!released.load()) std::this_thread::sleep_for(milliseconds(10));
        return Outcome::ok();
      },
      2);
  RecordingHandler* heldp = held.get();
  relay.add_handler("held", std::move(held));
  relay.add_route("g.held", {"held"});
  RecordingHandler* ok = add_recorder(relay, "g.ok", "ok");
  auto failing = std::make_unique<RecordingHandler>([](const Event&) { return Outcome::retry("not now"); });
  RecordingHandler* failingp = failing.get();
  relay.add_handler("failing", std::move(failing), RetryPolicy{10, 3600000, 3600000, 0.0});  // next attempt in an hour
  relay.add_route("g.retry", {"failing"});
  relay.add_route("g.paused", {"ok"});
  RelayThread t(relay);
  struct Release {
    std::atomic<bool>& flag;
    ~Release() { flag = true; }
  } release{released};
  REQUIRE(eventually([&] { return relay.admin_port() != 0; }, seconds(10)));
  const uint16_t port = relay.admin_port();

  REQUIRE(eventually([&] { return ok->count() == 2; }, seconds(10)));
  db.exec("SELECT pgrelay.emit('g.retry', '{}') FROM generate_series(1, 3)");
  REQUIRE(eventually([&] { return failingp->count() == 3; }, seconds(10)));
  db.exec("SELECT pgrelay.pause('g.paused', 'test')");
  db.exec("SELECT pgrelay.emit('g.paused', '{}') FROM generate_series(1, 4)");
  db.exec("SELECT pgrelay.emit('g.held', '{}') FROM generate_series(1, 5)");
  db.exec("SELECT pgrelay.emit('g.held', '{}', 'kb') FROM generate_series(1, 2)");
  REQUIRE(eventually([&] { return heldp->count() == 2; }, seconds(10)));
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'paused'") == 4; },
                     seconds(10)));
  // The oldest due event: created an hour ago, due for ten minutes.
  db.exec(
      "UPDATE pgrelay.db_events SET created_at = now() - interval '1 hour', next_attempt_at = now() - interval '10 "
      "minutes' "
      "WHERE id = (SELECT min(id) FROM pgrelay.db_events WHERE event_type = 'g.held' AND status = 'pending')");

  std::string text;
  const bool sampled = eventually(
      [&] {
        text = http_get(port, "/metrics").body;
        return prom_value(text, "pgrelay_oldest_pending_age_seconds") >= 3600;  // a sample after the update
      },
      seconds(15));
  INFO(text);
  REQUIRE(sampled);
  // Held by the relay: the first two g.held events. Due behind them: three unkeyed and kb's head.
  CHECK(prom_value(text, "pgrelay_processing_events") == 2);
  CHECK(prom_value(text, "pgrelay_backlog_events") == 4);
  CHECK(prom_value(text, "pgrelay_blocked_events") == 1);
  CHECK(prom_value(text, "pgrelay_scheduled_events") == 3);
  CHECK(prom_value(text, "pgrelay_paused_backlog_events") == 4);
  CHECK(prom_value(text, "pgrelay_paused_types") == 1);
  CHECK(prom_value(text, "pgrelay_dead_events") == 0);
  CHECK(prom_value(text, "pgrelay_unrouted_events") == 0);
  const double due_wait = prom_value(text, "pgrelay_oldest_due_wait_seconds");
  CHECK(due_wait >= 600);
  CHECK(due_wait < 900);
  CHECK(prom_value(text, "pgrelay_oldest_pending_age_seconds") < 3900);
  CHECK(prom_value(text, R"(pgrelay_events_total{result="retried"})") == 3);
  CHECK(prom_value(text, R"(pgrelay_events_total{result="delivered"})") == 2);
  CHECK(prom_value(text, "pgrelay_lease_expiries_total") == 2);
  // The database agrees.
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'processing'") == 2);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'blocked'") == 1);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'pending' AND next_attempt_at > now()") == 3);
  released = true;
  REQUIRE(eventually([&] { return heldp->count() == 7; }, seconds(15)));
}

namespace {

void pause_accumulates_then_resume_drains(const std::string& claim_mode) {
  CAPTURE(claim_mode);
  TestDb db;
  Config c = test_config(db.url());
  c.relay.claim = claim_mode;
  // Only a wake can deliver within this test: the safety poll is a minute away.
  c.relay.poll_interval_ms = 60000;
  Relay relay(c);
  RecordingHandler* rec = add_recorder(relay);
  RelayThread t(relay);
  REQUIRE(eventually([&] { return relay.listening(); }, seconds(10)));

  // --force: no event of p.held exists yet and no config names it.
  auto p = run_pgrelay({"-d", db.url(), "pause", "p.held", "--force", "--reason", "receiver maintenance"},
                       {{"USER", "alice"}});
  REQUIRE(p.code == 0);
  // Who paused it: the operator's user@host by default.
  const std::string by =
      db.exec("SELECT paused_by FROM pgrelay.paused_types WHERE event_type = 'p.held'")[0][0].as<std::string>();
  CHECK(by.rfind("alice@", 0) == 0);
  CHECK(by.size() > 6);
  CHECK(has(p.out, "paused p.held"));
  db.exec("SELECT pgrelay.emit('p.held', '{}') FROM generate_series(1, 20)");
  db.exec("SELECT pgrelay.emit('p.free', '{}') FROM generate_series(1, 5)");
  REQUIRE(eventually([&] { return rec->count() == 5; }, seconds(10)));
  const int64_t claims = relay.stats().claims_with_events;
  db.exec("SELECT pgrelay.emit('p.free', '{}')");  // one more claim that meets the paused backlog
  REQUIRE(eventually([&] { return rec->count() == 6; }, seconds(10)));
  CHECK(relay.stats().claims_with_events > claims);
  CHECK(rec->count() == 6);  // still nothing of p.held
  // Set aside by the claims that met them, so later claims do not walk them again.
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE event_type = 'p.held' AND status = 'paused'") == 20);
  db.exec("SELECT pgrelay.emit('p.held', '{}') FROM generate_series(1, 5)");  // keeps accumulating
  auto st = run_pgrelay({"-d", db.url(), "status"});
  CHECK(has(st.out, "p.held"));
  CHECK(has(st.out, "by " + by + ": receiver maintenance"));
  auto js = run_pgrelay({"-d", db.url(), "status", "--json"});
  CHECK(has(js.out, "\"paused\":[{\"type\":\"p.held\""));
  CHECK(has(js.out, "\"paused_by\":\"" + by + "\""));

  auto r = run_pgrelay({"-d", db.url(), "resume", "p.held"});
  REQUIRE(r.code == 0);
  // The resume woke the relay (NOTIFY): the safety poll would come 60 s later.
  REQUIRE(eventually([&] { return rec->count() == 31; }, seconds(20)));
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0; }, seconds(10)));
  CHECK(run_pgrelay({"-d", db.url(), "resume", "p.held"}).out.find("was not paused") != std::string::npos);
}

}  // namespace

TEST_CASE("a paused type accumulates and drains after resume, with either claim mode") {
  pause_accumulates_then_resume_drains("lease");
  pause_accumulates_then_resume_drains("transaction");
}

TEST_CASE("replay with --dry-run lists exactly what a real replay then delivers") {
  TestDb db;
  Config c = test_config(db.url());
  c.relay.done_retention_s = 3600;
  Relay relay(c);
  RecordingHandler* rec = add_recorder(relay);
  RelayThread t(relay);

  // A dry run that finds nothing did what was asked; it still says why there may be nothing.
  auto nothing = run_pgrelay({"-d", db.url(), "replay", "--type", "r.a", "--dry-run"});
  CHECK(nothing.code == 0);
  CHECK(has(nothing.out, "replay --dry-run: 0 events would be replayed"));
  CHECK(has(nothing.err, "relay.done_retention_s"));
  CHECK(run_pgrelay({"-d", db.url(), "replay", "--type", "r.a"}).code == 1);  // a replay that replays nothing did not

  db.exec("SELECT pgrelay.emit('r.a', jsonb_build_object('n', g), 'k' || (g % 3)) FROM generate_series(1, 6) g");
  db.exec("SELECT pgrelay.emit('r.b', '{}') FROM generate_series(1, 4)");
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'done'") == 10; },
                     seconds(15)));
  const int64_t first_a = db.scalar("SELECT min(id) FROM pgrelay.db_events WHERE event_type = 'r.a'");
  const std::vector<std::string> filter = {
      "--type", "r.*", "--from-id", std::to_string(first_a + 1), "--to-id", std::to_string(first_a + 7)};
  std::vector<std::string> dry = {"-d", db.url(), "replay", "--dry-run", "--json"};
  dry.insert(dry.end(), filter.begin(), filter.end());
  auto d = run_pgrelay(dry);
  REQUIRE(d.code == 0);
  std::set<int64_t> listed;
  for (size_t at = d.out.find("{\"id\":"); at != std::string::npos; at = d.out.find("{\"id\":", at + 1)) {
    listed.insert(std::stoll(d.out.substr(at + 6)));
  }
  CHECK(listed.size() == 7);
  CHECK(*listed.begin() == first_a + 1);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'done'") == 10);  // dry run changed nothing

  const size_t before = rec->count();
  std::vector<std::string> real = {"-d", db.url(), "replay", "--rate", "200/s"};
  real.insert(real.end(), filter.begin(), filter.end());
  auto rr = run_pgrelay(real);
  REQUIRE(rr.code == 0);
  CHECK(has(rr.out, "replay: 7 events pending again"));
  REQUIRE(eventually([&] { return rec->count() == before + 7; }, seconds(15)));
  std::this_thread::sleep_for(milliseconds(300));
  CHECK(rec->count() == before + 7);
  std::set<int64_t> delivered;
  const auto all = rec->deliveries();
  for (size_t i = before; i < all.size(); ++i) {
    delivered.insert(all[i].id);
    CHECK(all[i].attempt == 1);  // a fresh attempt count
  }
  CHECK(delivered == listed);
  for (int64_t id : listed) CHECK(deliveries_of(*rec, id) == 2);
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'done'") == 10; },
                     seconds(10)));
}

TEST_CASE("retention removes finished events and leaves dead ones") {
  TestDb db;
  Config c = test_config(db.url());
  c.relay.done_retention_s = 1;
  Relay relay(c);
  auto ok = std::make_unique<RecordingHandler>();
  auto bad = std::make_unique<RecordingHandler>([](const Event&) { return Outcome::dead("no"); });
  relay.add_handler("ok", std::move(ok));
  relay.add_handler("bad", std::move(bad));
  relay.add_route("ret.ok", {"ok"});
  relay.add_route("ret.bad", {"bad"});
  RelayThread t(relay);
  db.exec("SELECT pgrelay.emit('ret.ok', '{}') FROM generate_series(1, 12000)");
  db.exec("SELECT pgrelay.emit('ret.bad', '{}') FROM generate_series(1, 5)");
  REQUIRE(eventually(
      [&] {
        return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status IN ('pending', 'processing')") == 0;
      },
      seconds(60)));
  // Kept for the retention first...
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'done'") > 0);
  // ...then removed in batches by the relay's periodic sweep.
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'done'") == 0; },
                     seconds(30)));
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'dead'") == 5);
}
