// Per-key runs: a claim takes a key's head and the events behind it, the relay
// delivers them one after another without a round trip between them, and a
// failure stops the run there while other keys flow.
#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <thread>

#include "support/child_process.hpp"
#include "support/recording_handler.hpp"
#include "support/test_db.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST_CASE("a key's events go one after another in commit order, many per claim") {
  TestDb db;
  Config c = test_config(db.url());
  c.relay.wake = "poll";
  Relay relay(c);
  RecordingHandler* rec = add_recorder(relay);
  db.exec("SELECT pgrelay.emit('acct.moved', jsonb_build_object('n', g), 'acct:1') FROM generate_series(1, 300) g");
  RelayThread t(relay);
  REQUIRE(eventually([&] { return rec->count() == 300; }, seconds(20)));
  t.stop();
  const auto log = rec->deliveries();
  for (size_t i = 1; i < log.size(); ++i) CHECK(log[i - 1].id < log[i].id);
  CHECK(rec->overlaps() == 0);
  // One event per claim round trip would take 300 claims that return something.
  MESSAGE("claims that returned events: " << relay.stats().claims_with_events.load());
  CHECK(relay.stats().claims_with_events < 10);
}

TEST_CASE("a run going on costs no claim and no promotion per ack: its key's next event is the relay's already") {
  TestDb db;
  // Counts calls of PL/pgSQL functions, the acks' promote() among them.
  db.exec("ALTER DATABASE " + db.name() + " SET track_functions = 'pl'");
  Config c = test_config(db.url());
  c.relay.wake = "notify";  // no periodic poll: every claim is one the relay chose to make
  auto owned = std::make_unique<Relay>(c);
  Relay& relay = *owned;
  // Answers from a worker thread after up to 2 ms, as a handler waiting on I/O: acks
  // (every relay.ack_delay_ms) fall while the run's next event is being delivered.
  auto h = std::make_unique<RecordingHandler>(RecordingHandler::Script{}, 1, 2000);
  RecordingHandler* rec = h.get();
  relay.add_handler("rec", std::move(h));
  relay.add_route("*", {"rec"});
  db.exec("SELECT pgrelay.emit('acct.moved', jsonb_build_object('n', g), 'acct:1') FROM generate_series(1, 300) g");
  {
    RelayThread t(relay);
    REQUIRE(eventually([&] { return rec->count() == 300; }, seconds(20)));
    REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0; }, seconds(5)));
  }
  CHECK(rec->overlaps() == 0);
  // Two runs of up to 256 (relay.batch_size) and a few acks that end them: a claim or a
  // promotion per ack would be well over a hundred of each (an ack every ~2 events).
  const int64_t claims = relay.stats().claim_batches.load();
  MESSAGE("claims: " << claims);
  CHECK(claims < 30);
  owned.reset();  // its sessions end, and their function counts reach the statistics
  int64_t promotions = 0;
  REQUIRE(eventually(
      [&] {
        promotions = db.scalar(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions WHERE schemaname = 'pgrelay' "
            "AND funcname = 'promote'");
        return promotions > 0;
      },
      seconds(5)));
  MESSAGE("promotions: " << promotions);
  CHECK(promotions < 30);
}

TEST_CASE("a run stops at a failing event: its key's later events wait while other keys flow") {
  TestDb db;
  Config c = test_config(db.url());
  c.relay.wake = "poll";
  c.relay.lease_ms = 60000;  // the held events go once the head succeeds, not when their lease would end
  Relay relay(c);
  std::atomic<bool> healed{false};
  auto h = std::make_unique<RecordingHandler>([&](const Event& e) {
    if (!healed && e.json.find("\"n\": 3") != std::string::npos) return Outcome::retry("receiver down");
    return Outcome::ok();
  });
  RecordingHandler* rec = h.get();
  relay.add_handler("rec", std::move(h), RetryPolicy{20, 100, 200, 0.0});
  relay.add_route("*", {"rec"});
  db.exec("SELECT pgrelay.emit('e', jsonb_build_object('n', g), 'k1') FROM generate_series(1, 10) g");
  db.exec(
      "SELECT pgrelay.emit('e', jsonb_build_object('n', 100 + g), 'k' || (g % 5 + 2)) FROM generate_series(1, 50) g");
  RelayThread t(relay);
  // Every other key is delivered while k1 is stuck at its third event.
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE key <> 'k1'") == 0; },
                     seconds(10)));
  std::this_thread::sleep_for(milliseconds(500));  // a few retries of n=3
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE key = 'k1'") == 8);
  // Between n=3's retries the rest of k1 waits blocked, its attempts not spent. (Each retry
  // claims them again as its run, for the moment until n=3 fails and they are held back.)
  CHECK(eventually(
      [&] {
        return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE key = 'k1' AND status = 'blocked'") == 7 &&
               db.scalar("SELECT attempts FROM pgrelay.db_events WHERE payload->>'n' = '4'") == 0;
      },
      seconds(5)));
  for (const auto& d : rec->deliveries()) {
    if (d.key && *d.key == "k1") CHECK(d.id <= db.scalar("SELECT id FROM pgrelay.db_events WHERE payload->>'n' = '3'"));
  }
  healed = true;
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0; }, seconds(10)));
  t.stop();
  std::vector<int64_t> k1;
  for (const auto& d : rec->deliveries()) {
    if (d.key && *d.key == "k1" && (k1.empty() || k1.back() != d.id)) k1.push_back(d.id);
  }
  REQUIRE(k1.size() == 10);
  for (size_t i = 1; i < k1.size(); ++i) CHECK(k1[i - 1] < k1[i]);
  CHECK(rec->overlaps() == 0);
}

TEST_CASE("a relay's last run ends at shutdown with the rest of the key waiting, none of it spent") {
  TestDb db;
  Config c = test_config(db.url());
  Relay relay(c);
  auto h = std::make_unique<RecordingHandler>(
      [](const Event&) {
        std::this_thread::sleep_for(milliseconds(30));
        return Outcome::ok();
      },
      1);
  RecordingHandler* rec = h.get();
  relay.add_handler("rec", std::move(h));
  relay.add_route("*", {"rec"});
  db.exec("SELECT pgrelay.emit('e', jsonb_build_object('n', g), 'k') FROM generate_series(1, 100) g");
  {
    RelayThread t(relay);
    REQUIRE(eventually([&] { return rec->count() >= 5; }, seconds(10)));
  }
  const int64_t left = db.scalar("SELECT count(*) FROM pgrelay.db_events");
  CHECK(left > 0);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE attempts > 0") == 0);
  // One head, the rest behind it; a new relay finishes the key in order.
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'pending'") == 1);
  Relay next(test_config(db.url()));
  RecordingHandler* rec2 = add_recorder(next);
  RelayThread t2(next);
  REQUIRE(eventually([&] { return static_cast<int64_t>(rec2->count()) == left; }, seconds(10)));
  const auto log = rec2->deliveries();
  for (size_t i = 1; i < log.size(); ++i) CHECK(log[i - 1].id < log[i].id);
}

TEST_CASE("a run claimed behind a head whose outcome is not yet recorded follows that outcome, not stuck held") {
  // The head's lease runs out while its done outcome waits for the next ack; the claim
  // that takes it again also takes the key's events produced since, behind it.
  TestDb db;
  Config c = test_config(db.url());
  c.relay.wake = "notify";  // the key's new events wake the claim at once
  c.relay.ack_delay_ms = 1000;
  c.relay.lease_ms = 60000;
  Relay relay(c);
  std::atomic<bool> let_slow_go{false};
  // Keeps one delivery running, so the ack waits for ack_delay_ms rather than going out
  // as soon as nothing is running.
  auto slow = std::make_unique<RecordingHandler>(
      [&](const Event&) {
        while (!let_slow_go) std::this_thread::sleep_for(milliseconds(5));
        return Outcome::ok();
      },
      1);
  relay.add_handler("slow", std::move(slow));
  relay.add_route("slow", {"slow"});
  RecordingHandler* rec = add_recorder(relay, "e");
  db.exec("SELECT pgrelay.emit('slow', '{}')");
  const int64_t head = db.scalar("SELECT pgrelay.emit('e', '{\"n\": 1}', 'k')");
  RelayThread t(relay);
  REQUIRE(eventually([&] { return rec->count() == 1; }, seconds(10)));
  // Its lease "runs out" now, its outcome still unrecorded; then two more of the key.
  REQUIRE(db.scalar("WITH x AS (UPDATE pgrelay.db_events SET next_attempt_at = now() - interval '1 second' "
                    "WHERE id = " +
                    std::to_string(head) +
                    " AND status = 'processing' RETURNING 1) "
                    "SELECT count(*) FROM x") == 1);
  db.exec("SELECT pgrelay.emit('e', jsonb_build_object('n', g), 'k') FROM generate_series(2, 3) g");
  const bool run_delivered = eventually([&] { return rec->count() == 3; }, seconds(10));
  let_slow_go = true;  // before any REQUIRE: the relay's shutdown waits for this delivery
  REQUIRE(run_delivered);
  CHECK(relay.stats().own_reclaims >= 1);  // the case this test is about did happen
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0; }, seconds(10)));
  t.stop();
  const auto log = rec->deliveries();
  REQUIRE(log.size() == 3);
  CHECK(log[0].id == head);
  CHECK(log[0].id < log[1].id);
  CHECK(log[1].id < log[2].id);
}

TEST_CASE("a run whose head another relay took while this one was cut off is given back rather than held forever") {
  TestDb db;
  Config c = test_config(db.url());
  c.relay.wake = "notify";
  c.relay.lease_ms = 60000;
  Relay relay(c);
  std::atomic<bool> let_head_go{false};
  auto h = std::make_unique<RecordingHandler>(
      [&](const Event& e) {
        while (e.json.find("\"n\": 1") != std::string::npos && !let_head_go)
          std::this_thread::sleep_for(milliseconds(5));
        return Outcome::ok();
      },
      1);
  RecordingHandler* rec = h.get();
  relay.add_handler("rec", std::move(h));
  relay.add_route("*", {"rec"});
  db.exec("SELECT pgrelay.emit('e', jsonb_build_object('n', g), 'k') FROM generate_series(1, 3) g");
  const int64_t head = db.scalar("SELECT min(id) FROM pgrelay.db_events");
  RelayThread t(relay);
  // The head is being delivered, the other two wait behind it in this relay's run.
  const bool claimed =
      eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'processing'") == 3; },
                 seconds(10));
  // Another relay takes the head (as after a lease ran out) while this one is cut off.
  db.exec("UPDATE pgrelay.db_events SET claim_token = claim_token + 1000000, lease_owner = 'other' WHERE id = " +
          std::to_string(head));
  // This database's claimer only: tests run in parallel, each in its own database.
  const int64_t cut = db.scalar(
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
      "WHERE application_name = 'pgrelay-claimer' AND datname = current_database()");
  // Back, this relay lets the head go; the rest of its run is given back behind it.
  const bool given_back = eventually(
      [&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'blocked'") == 2; }, seconds(10));
  // The other relay finishes the head: the key goes on. (This relay's own delivery of it
  // ends too, its outcome no longer wanted; it frees the handler's one worker.)
  db.exec("SELECT pgrelay.ack_done(ARRAY[id], ARRAY[claim_token], false, '{}') FROM pgrelay.db_events WHERE id = " +
          std::to_string(head));
  let_head_go = true;  // before any REQUIRE: the relay's shutdown waits for this delivery
  const bool drained =
      eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0; }, seconds(10));
  REQUIRE(claimed);
  REQUIRE(cut == 1);
  REQUIRE(given_back);
  REQUIRE(drained);
  t.stop();
  std::vector<int64_t> ids;
  for (const auto& d : rec->deliveries()) ids.push_back(d.id);
  REQUIRE(ids.size() >= 3);
  CHECK(ids[ids.size() - 2] == head + 1);
  CHECK(ids[ids.size() - 1] == head + 2);
}
