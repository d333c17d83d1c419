// What a claim costs, counted in buffers it touches (EXPLAIN ANALYZE BUFFERS of the
// real pgrelay.claim() call, which counts every statement inside it): the same for
// 100 ordinary events whatever waits beside them. Counts, not times, so the test is
// as steady on a loaded machine as on an idle one.
#include <doctest/doctest.h>

#include <regex>
#include <thread>

#include "support/child_process.hpp"
#include "support/recording_handler.hpp"

#include "support/test_db.hpp"

using namespace pgrelay::test;

namespace {

constexpr const char* kClaim =
    "SELECT * FROM pgrelay.claim(100, 100, 100, 30000, 'probe', false, '{ordinary}', '{}')";

// Buffers (hit + read) one claim touches, rolled back so the backlog stays as it is.
int64_t claim_buffers(const TestDb& db) {
  auto conn = db.connect();
  pqxx::work tx(*conn);
  int64_t total = 0;
  for (const auto& row : tx.exec(std::string("EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) ") + kClaim)) {
    const std::string line = row[0].as<std::string>();
    static const std::regex buffers(R"(Buffers: shared( hit=(\d+))?( read=(\d+))?)");
    std::smatch m;
    if (std::regex_search(line, m, buffers)) {
      total = (m[2].matched ? std::stoll(m[2]) : 0) + (m[4].matched ? std::stoll(m[4]) : 0);
      break;  // the top node's figure covers everything under it
    }
  }
  tx.abort();
  return total;
}

// 100 ordinary events over 20 keys, plus `shape`, after a relay (routing neither)
// has met it for a moment, as a running relay's claims would have; then the claim.
int64_t cost_beside(const std::string& shape) {
  TestDb db;
  db.exec("SELECT pgrelay.emit('ordinary', jsonb_build_object('n', g), 'k' || (g % 20)) FROM generate_series(1, 100) g");
  if (!shape.empty()) db.exec(shape);
  // The relay that routes 'ordinary' (the probe below) is live; it just has not claimed yet.
  db.exec("INSERT INTO pgrelay.relays (id, wake, routes_all, routes_exact) VALUES ('probe', 'poll', false, '{ordinary}')");
  {
    pgrelay::Config c = test_config(db.url());
    c.relay.wake = "poll";
    pgrelay::Relay other(c);
    add_recorder(other, "setup.only");
    RelayThread t(other);
    // Until its claims have met everything the shape left pending (paused or unrouted types).
    REQUIRE(eventually(
        [&] {
          return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'pending' AND event_type <> 'ordinary'") ==
                 0;
        },
        std::chrono::seconds(60)));
  }
  db.exec("UPDATE pgrelay.relays SET seen_at = now() WHERE id = 'probe'");
  {
    auto conn = db.connect();
    pqxx::nontransaction tx(*conn);
    tx.exec("VACUUM ANALYZE pgrelay.db_events");
  }
  return claim_buffers(db);
}

}  // namespace

TEST_CASE("a claim touches as many buffers beside 20,000 waiting events of any shape as beside none") {
  const int64_t plain = cost_beside("");
  MESSAGE("plain: " << plain << " buffers");
  REQUIRE(plain > 0);
  const std::vector<std::pair<std::string, std::string>> shapes = {
      {"one hot key whose head waits for a retry",
       "SELECT pgrelay.emit('ordinary', jsonb_build_object('hot', g), 'hot') FROM generate_series(1, 20000) g; "
       "UPDATE pgrelay.db_events SET next_attempt_at = now() + interval '1 hour', attempts = 1 "
       " WHERE id = (SELECT min(id) FROM pgrelay.db_events WHERE key = 'hot')"},
      {"a paused type",
       "SELECT pgrelay.pause('held', NULL); SELECT pgrelay.emit('held', '{}') FROM generate_series(1, 20000)"},
      {"an unrouted type", "SELECT pgrelay.emit('nobody', '{}') FROM generate_series(1, 20000)"},
      {"scheduled retries",
       "SELECT pgrelay.emit('ordinary', '{}') FROM generate_series(1, 20000); "
       "UPDATE pgrelay.db_events SET next_attempt_at = now() + interval '1 hour' WHERE key IS NULL"},
      {"dead letters",
       "SELECT pgrelay.emit('ordinary', '{}') FROM generate_series(1, 20000); "
       "UPDATE pgrelay.db_events SET status = 'dead' WHERE key IS NULL"},
  };
  for (const auto& [name, sql] : shapes) {
    const int64_t cost = cost_beside(sql);
    MESSAGE(name << ": " << cost << " buffers");
    CAPTURE(name);
    CHECK(cost <= plain * 3 / 2);
  }
}
