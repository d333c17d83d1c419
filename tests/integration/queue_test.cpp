// The claim/ack layer: fenced leases, expiry, per-key heads, batch outcomes.
#include <doctest/doctest.h>

#include <set>
#include <thread>

#include "store/connection.hpp"
#include "store/queue.hpp"
#include "support/test_db.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::milliseconds;

namespace {

std::unique_ptr<Queue> queue_for(const TestDb& db, const std::string& owner) {
  TypeFilter all;
  all.everything = true;
  return std::make_unique<Queue>(connect(db.url(), "test"), owner, all);
}

Ack done(const Event& e) { return Ack{e.id, e.claim_token, Ack::Kind::done, 0, "", {}}; }

}  // namespace

TEST_CASE("an expired lease makes the event claimable by another relay with a new token") {
  TestDb db;
  db.exec("SELECT pgrelay.emit('a', '{}')");
  auto q1 = queue_for(db, "relay-1");
  auto q2 = queue_for(db, "relay-2");
  auto first = q1->claim(Queue::Limits{10, 10, 1}, milliseconds(1000));
  REQUIRE(first.events.size() == 1);
  CHECK(q2->claim(Queue::Limits{10, 10, 1}, milliseconds(1000)).events.empty());  // leased
  std::this_thread::sleep_for(milliseconds(1100));
  auto second = q2->claim(Queue::Limits{10, 10, 1}, milliseconds(5000));
  REQUIRE(second.events.size() == 1);
  CHECK(second.lease_expiries == 1);
  CHECK(second.events[0].attempt == 2);
  CHECK(second.events[0].claim_token != first.events[0].claim_token);
  CHECK(db.exec("SELECT lease_owner FROM pgrelay.db_events")[0][0].as<std::string>() == "relay-2");
}

TEST_CASE("a stale relay whose token was replaced cannot mark the event done or dead") {
  TestDb db;
  db.exec("SELECT pgrelay.emit('a', '{}'), pgrelay.emit('b', '{}')");
  auto stale = queue_for(db, "stale");
  auto fresh = queue_for(db, "fresh");
  auto old_claim = stale->claim(Queue::Limits{10, 10, 1}, milliseconds(1000)).events;
  REQUIRE(old_claim.size() == 2);
  std::this_thread::sleep_for(milliseconds(1100));
  auto new_claim = fresh->claim(Queue::Limits{10, 10, 1}, milliseconds(30000)).events;
  REQUIRE(new_claim.size() == 2);
  Ack dead{old_claim[1].id, old_claim[1].claim_token, Ack::Kind::dead, 0, "stale says dead", {}};
  const AckResult refused = stale->ack({done(old_claim[0]), dead}, false);
  CHECK(refused.applied == 0);
  REQUIRE(refused.refused.size() == 2);  // each refusal says who holds the event now
  CHECK(refused.refused[0].status == "processing");
  CHECK(refused.refused[0].lease_owner == "fresh");
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'processing'") == 2);
  CHECK(fresh->ack({done(new_claim[0]), done(new_claim[1])}, false).applied == 2);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0);
}

TEST_CASE("only the oldest unfinished event of a key is claimable") {
  TestDb db;
  db.exec(
      "SELECT pgrelay.emit('a', '{}', 'k1'), pgrelay.emit('a', '{}', 'k1'), pgrelay.emit('a', '{}', 'k2'), "
      "pgrelay.emit('a', '{}')");
  auto q = queue_for(db, "r");
  auto c1 = q->claim(Queue::Limits{10, 10, 1}, milliseconds(30000)).events;
  REQUIRE(c1.size() == 3);  // head of k1, head of k2, the keyless one
  CHECK(c1[0].id == 1);
  CHECK(c1[1].id == 3);
  CHECK(c1[2].id == 4);
  CHECK(q->claim(Queue::Limits{10, 10, 1}, milliseconds(30000)).events.empty());
  // A retry of the head holds back its key, not others.
  Ack retry{1, c1[0].claim_token, Ack::Kind::retry, 60000, "boom", {}};
  CHECK(q->ack({retry, done(c1[1]), done(c1[2])}, false).applied == 3);
  CHECK(q->claim(Queue::Limits{10, 10, 1}, milliseconds(30000)).events.empty());
  db.exec("UPDATE pgrelay.db_events SET next_attempt_at = now() WHERE id = 1");
  auto c2 = q->claim(Queue::Limits{10, 10, 1}, milliseconds(30000)).events;
  REQUIRE(c2.size() == 1);
  CHECK(c2[0].id == 1);
  CHECK(c2[0].attempt == 2);
  CHECK(q->ack({done(c2[0])}, false).applied == 1);
  auto c3 = q->claim(Queue::Limits{10, 10, 1}, milliseconds(30000)).events;
  REQUIRE(c3.size() == 1);
  CHECK(c3[0].id == 2);
}

TEST_CASE("an event held after its key's head finished is pending at once, not left for the orphan sweep") {
  TestDb db;
  db.exec("SELECT pgrelay.emit('a', '{}', 'k') FROM generate_series(1, 2)");
  auto q = queue_for(db, "r");
  auto run = q->claim(Queue::Limits{10, 10, 10}, milliseconds(30000)).events;
  REQUIRE(run.size() == 2);  // the head and its run
  // The head's outcome is recorded first; the run's event is given back afterwards, as a
  // relay does whose acks were split (a late ack after its lease ran out, say).
  CHECK(q->ack({done(run[0])}, false).applied == 1);
  CHECK(q->ack({Ack{run[1].id, run[1].claim_token, Ack::Kind::hold, 0, "", {}}}, false).applied == 1);
  CHECK(db.exec("SELECT status FROM pgrelay.db_events")[0][0].as<std::string>() == "pending");
  auto next = q->claim(Queue::Limits{10, 10, 10}, milliseconds(30000)).events;
  REQUIRE(next.size() == 1);
  CHECK(next[0].id == run[1].id);
}

TEST_CASE("outcomes record retry time, errors, finished handlers and dead letters in one round trip") {
  TestDb db;
  db.exec("SELECT pgrelay.emit('a', '{}') FROM generate_series(1, 4)");
  auto q = queue_for(db, "r");
  auto c = q->claim(Queue::Limits{10, 10, 1}, milliseconds(30000)).events;
  REQUIRE(c.size() == 4);
  std::vector<Ack> acks = {
      done(c[0]),
      Ack{c[1].id, c[1].claim_token, Ack::Kind::retry, 5000, "HTTP 503: \"busy\"\n", {"audit"}},
      Ack{c[2].id, c[2].claim_token, Ack::Kind::dead, 0, "bad payload", {}},
      Ack{c[3].id, c[3].claim_token, Ack::Kind::release, 0, "released at shutdown", {}},
  };
  CHECK(q->ack(acks, true).applied == 4);
  auto r = db.exec(
      "SELECT status, attempts, last_error, handlers_done::text, "
      "next_attempt_at > now() + interval '4 s', finished_at IS NOT NULL FROM pgrelay.db_events ORDER BY id");
  CHECK(r[0][0].as<std::string>() == "done");
  CHECK(r[0][5].as<bool>());
  CHECK(r[1][0].as<std::string>() == "pending");
  CHECK(r[1][2].as<std::string>() == "HTTP 503: \"busy\"\n");
  CHECK(r[1][3].as<std::string>() == "{audit}");
  CHECK(r[1][4].as<bool>());
  CHECK(r[2][0].as<std::string>() == "dead");
  CHECK(r[2][2].as<std::string>() == "bad payload");
  CHECK(r[3][0].as<std::string>() == "pending");
  CHECK(r[3][1].as<int>() == 0);  // a release gives the attempt back
  auto again = q->claim(Queue::Limits{10, 10, 1}, milliseconds(30000)).events;
  REQUIRE(again.size() == 1);
  CHECK(again[0].id == c[3].id);
}

TEST_CASE("a heartbeat extends only leases still held") {
  TestDb db;
  db.exec("SELECT pgrelay.emit('a', '{}'), pgrelay.emit('a', '{}')");
  auto q = queue_for(db, "r");
  auto c = q->claim(Queue::Limits{10, 10, 1}, milliseconds(1000)).events;
  REQUIRE(c.size() == 2);
  CHECK(q->extend({{c[0].id, c[0].claim_token}, {c[1].id, c[1].claim_token + 999}}, milliseconds(60000)) ==
        std::vector<int64_t>{c[0].id});
  std::this_thread::sleep_for(milliseconds(1100));
  auto other = queue_for(db, "other")->claim(Queue::Limits{10, 10, 1}, milliseconds(1000)).events;
  REQUIRE(other.size() == 1);
  CHECK(other[0].id == c[1].id);
}

TEST_CASE("the claim query takes each event once under concurrent claimers") {
  TestDb db;
  db.exec("SELECT pgrelay.emit('a', '{}') FROM generate_series(1, 3000)");
  std::vector<std::vector<int64_t>> got(4);
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i) {
    ts.emplace_back([&, i] {
      auto q = queue_for(db, "r" + std::to_string(i));
      for (;;) {
        auto c = q->claim(Queue::Limits{50, 50, 1}, milliseconds(30000)).events;
        if (c.empty()) break;
        std::vector<Ack> acks;
        for (auto& e : c) {
          got[i].push_back(e.id);
          acks.push_back(done(e));
        }
        q->ack(acks, false);
      }
    });
  }
  for (auto& t : ts) t.join();
  std::set<int64_t> all;
  size_t total = 0;
  for (auto& g : got) {
    total += g.size();
    all.insert(g.begin(), g.end());
  }
  CHECK(total == 3000);
  CHECK(all.size() == 3000);
}
