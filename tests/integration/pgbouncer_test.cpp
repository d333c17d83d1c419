// Behind a real PgBouncer in transaction mode, as docs/operations.md promises:
// two relays with database.url through the pooler and listen_url direct, one of
// them restarted mid-way, deliver every event once, log no error, and show in
// `pgrelay status` run through the pooler.
#include <doctest/doctest.h>
#include <signal.h>

#include <map>
#include <sstream>

#include "support/child_process.hpp"
#include "support/pgbouncer.hpp"
#include "support/temp_config.hpp"
#include "support/test_db.hpp"

using namespace pgrelay::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

// Event ids in a relay's stdout (the stdout handler prints one JSON document a line).
void count_ids(const std::string& out, std::map<int64_t, int>& seen) {
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    const auto at = line.find("{\"id\":");
    if (at != 0) continue;
    seen[std::stoll(line.substr(6))]++;
  }
}

void two_relays_through_the_pooler(const std::string& claim) {
  CAPTURE(claim);
  TestDb db;
  PgBouncer bouncer(server_url());
  const std::string pooled = bouncer.url(db.name());
  TempConfig cfg(R"({"database": {"url": ")" + pooled + R"(", "listen_url": ")" + db.url() + R"("},
    "relay": {"claim": ")" +
                 claim + R"(", "lease_ms": 10000, "batch_size": 100},
    "handlers": {"out": {"type": "stdout", "timeout_ms": 5000}},
    "routes": [{"match": "*", "handlers": ["out"]}]})");
  auto start = [&](const std::string& id) {
    return std::make_unique<ChildProcess>(std::vector<std::string>{PGRELAY_BIN, "-c", cfg.path, "run"},
                                          std::map<std::string, std::string>{{"PGRELAY_RELAY_ID", id}});
  };
  auto r1 = start("r1");
  auto r2 = start("r2");
  db.exec(
      "SELECT pgrelay.emit('pooled.e', jsonb_build_object('n', g), 'k' || (g % 50)) FROM generate_series(1, 2500) g");
  INFO("r1: " << r1->err().substr(0, 2000) << "\npgbouncer: " << bouncer.log().substr(0, 2000));
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") < 1500; }, seconds(30)));
  // A rolling restart, as docs/operations.md recommends for upgrades.
  r2->signal(SIGTERM);
  REQUIRE(r2->wait(seconds(15)) == 0);
  std::map<int64_t, int> seen;
  count_ids(r2->out(), seen);
  const std::string r2_err = r2->err();
  r2 = start("r2");
  db.exec(
      "SELECT pgrelay.emit('pooled.e', jsonb_build_object('n', g), 'k' || (g % 50)) FROM generate_series(1, 2500) g");
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0; }, seconds(60)));
  // Both relays report, and the pooler carries the status query too.
  RunResult status;
  REQUIRE(eventually(
      [&] {
        status = run_pgrelay({"-d", pooled, "status", "--json"});
        return status.out.find("\"r1\"") != std::string::npos && status.out.find("\"r2\"") != std::string::npos;
      },
      seconds(15)));
  r1->signal(SIGTERM);
  r2->signal(SIGTERM);
  CHECK(r1->wait(seconds(15)) == 0);
  CHECK(r2->wait(seconds(15)) == 0);
  count_ids(r1->out(), seen);
  count_ids(r2->out(), seen);
  CHECK(seen.size() == 5000);
  int duplicates = 0;
  for (const auto& [id, n] : seen) duplicates += n > 1;
  CHECK(duplicates == 0);  // nothing failed, so nothing is delivered twice
  for (const std::string& err : {r1->err(), r2_err, r2->err()}) {
    INFO(err.substr(0, 3000));
    CHECK(err.find("\"level\":\"error\"") == std::string::npos);
    CHECK(err.find("prepared statement") == std::string::npos);
  }
}

}  // namespace

TEST_CASE("two relays behind PgBouncer in transaction mode deliver every event once across a rolling restart") {
  two_relays_through_the_pooler("lease");
  two_relays_through_the_pooler("transaction");
}
