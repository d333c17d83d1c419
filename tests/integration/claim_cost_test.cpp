// What a claim costs, counted in buffers it touches (EXPLAIN ANALYZE BUFFERS of the
// real pgrelay.claim() call, which counts every statement inside it): the same for
// 100 ordinary events whatever waits beside them. Counts, not times, so the test is
// as steady on a loaded machine as on an idle one. And no statement of a claim, an
// ack or the admin sample is JIT-compiled, whatever the server's JIT settings.
#include <doctest/doctest.h>

#include <regex>
#include <thread>

#include "store/ops_queries.hpp"
#include "store/queue.hpp"
#include "support/child_process.hpp"
#include "support/recording_handler.hpp"
#include "support/test_db.hpp"

using namespace pgrelay::test;

namespace {

constexpr const char* kClaim = "SELECT * FROM pgrelay.claim(100, 100, 100, 30000, 'probe', false, '{ordinary}', '{}')";

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
  db.exec(
      "SELECT pgrelay.emit('ordinary', jsonb_build_object('n', g), 'k' || (g % 20)) FROM generate_series(1, 100) g");
  if (!shape.empty()) db.exec(shape);
  // The relay that routes 'ordinary' (the probe below) is live; it just has not claimed yet.
  db.exec(
      "INSERT INTO pgrelay.relays (id, wake, routes_all, routes_exact) VALUES ('probe', 'poll', false, '{ordinary}')");
  {
    pgrelay::Config c = test_config(db.url());
    c.relay.wake = "poll";
    pgrelay::Relay other(c);
    add_recorder(other, "setup.only");
    RelayThread t(other);
    // Until its claims have met everything the shape left pending (paused or unrouted types).
    REQUIRE(eventually(
        [&] {
          return db.scalar(
                     "SELECT count(*) FROM pgrelay.db_events WHERE status = 'pending' AND event_type <> 'ordinary'") ==
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

namespace {

// Collects the server's notices: here, auto_explain's plans of every statement run,
// nested ones (inside pgrelay's functions) included.
class PlanCollector : public pqxx::errorhandler {
 public:
  explicit PlanCollector(pqxx::connection& conn) : pqxx::errorhandler(conn) {}
  bool operator()(const char msg[]) noexcept override {
    try {
      plans.emplace_back(msg);
    } catch (...) {
      // A lost plan only weakens this test's look; it cannot pass one it saw.
    }
    return false;
  }
  std::vector<std::string> plans;
};

// A connection on which every statement's plan comes back as a notice, and JIT
// would compile any statement at all (every cost threshold 0), as on a server
// configured for analytics. False if auto_explain cannot be loaded here.
bool explain_everything_with_jit(pqxx::connection& conn) {
  pqxx::nontransaction tx(conn);
  try {
    tx.exec("LOAD 'auto_explain'");
  } catch (const pqxx::sql_error& e) {
    MESSAGE("auto_explain unavailable (" << e.what() << "): JIT check skipped");
    return false;
  }
  tx.exec(
      "SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on; "
      "SET auto_explain.log_analyze = on; SET auto_explain.log_level = notice; "
      "SET jit = on; SET jit_above_cost = 0; SET jit_inline_above_cost = 0; SET jit_optimize_above_cost = 0");
  return true;
}

std::string query_text(const std::string& plan) {
  const size_t at = plan.find("Query Text: ");
  if (at == std::string::npos) return "";
  return plan.substr(at + 12, plan.find('\n', at) - at - 12);
}

// The statements the relay sends: these run with the session's settings and call
// the functions that turn JIT off for everything inside them.
bool is_a_call_the_relay_sends(const std::string& text) {
  for (const char* call :
       {"SELECT * FROM pgrelay.claim($1", "SELECT applied, busy_keys FROM pgrelay.ack", "SELECT pgrelay.promote($1"}) {
    if (text.rfind(call, 0) == 0) return true;
  }
  return false;
}

}  // namespace

TEST_CASE(
    "no statement inside a claim, an ack or the admin sample is JIT-compiled, even with JIT set to compile "
    "everything") {
  TestDb db;
  db.exec("SELECT pgrelay.emit('jit.e', jsonb_build_object('n', g), 'k' || (g % 5)) FROM generate_series(1, 40) g");
  db.exec("SELECT pgrelay.emit('jit.e', '{}') FROM generate_series(1, 10)");
  {
    // The probe itself: a plain statement on such a connection is compiled, and the plan says so.
    auto conn = db.connect();
    if (!explain_everything_with_jit(*conn)) return;
    PlanCollector control(*conn);
    pqxx::nontransaction(*conn).exec("SELECT count(*) FROM pgrelay.db_events WHERE payload ? 'n'");
    REQUIRE(control.plans.size() == 1);
    REQUIRE(control.plans[0].find("JIT:") != std::string::npos);
  }
  auto conn = db.connect();
  REQUIRE(explain_everything_with_jit(*conn));
  auto collector = std::make_unique<PlanCollector>(*conn);
  std::vector<std::string> plans;
  {
    pgrelay::TypeFilter all;
    all.everything = true;
    pgrelay::Queue queue(std::move(conn), "jit-probe", all);
    const auto claimed = queue.claim(pgrelay::Queue::Limits{}, std::chrono::milliseconds(30000));
    REQUIRE(claimed.events.size() >= 10);
    std::vector<pgrelay::Ack> done, mixed;
    for (size_t i = 0; i < claimed.events.size(); ++i) {
      pgrelay::Ack a;
      a.id = claimed.events[i].id;
      a.token = claimed.events[i].claim_token;
      if (i % 2 == 0) {
        done.push_back(a);
      } else {
        a.kind = pgrelay::Ack::Kind::retry;
        a.delay_ms = 60000;
        a.error = "probe";
        mixed.push_back(a);
      }
    }
    CHECK(queue.ack(done, false).applied == static_cast<int>(done.size()));    // all done: pgrelay.ack_done()
    CHECK(queue.ack(mixed, false).applied == static_cast<int>(mixed.size()));  // retries: pgrelay.ack()
    plans = std::move(collector->plans);
    collector.reset();  // before the queue closes its connection
  }
  int nested = 0;
  for (const auto& plan : plans) {
    const std::string text = query_text(plan);
    if (is_a_call_the_relay_sends(text)) continue;
    ++nested;
    CAPTURE(plan);
    CHECK(plan.find("JIT:") == std::string::npos);
  }
  MESSAGE(nested << " statements inside pgrelay.claim(), ack_done() and ack()");
  CHECK(nested >= 5);

  // The admin sample (readiness and gauges) counts the whole backlog: no JIT either.
  auto sampler = db.connect();
  REQUIRE(explain_everything_with_jit(*sampler));
  {
    PlanCollector sample_plans(*sampler);
    pgrelay::read_sample(*sampler);
    CHECK(sample_plans.plans.size() >= 3);
    for (const auto& plan : sample_plans.plans) {
      CAPTURE(plan);
      CHECK(plan.find("JIT:") == std::string::npos);
    }
  }
}
