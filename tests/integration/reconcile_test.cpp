// `pgrelay reconcile` for cron: an exit code that means one thing, retries and
// leases that come due within the limit handled in the same run, the limit kept.
#include <doctest/doctest.h>

#include <chrono>

#include "support/child_process.hpp"
#include "support/http_receiver.hpp"
#include "support/temp_config.hpp"
#include "support/test_db.hpp"

using namespace pgrelay::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

bool contains(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

// A command handler that fails for payloads with "fail" and delivers the rest.
const char* kConfig = R"({"handlers": {"cmd": {"type": "command", "timeout_ms": 5000,
    "command": ["sh", "-c", "grep -q '\"fail\": true' && exit 1; exit 0"],
    "retry": {"max_attempts": 3, "base_ms": 100, "cap_ms": 200}}},
  "routes": [{"match": "*", "handlers": ["cmd"]}]})";

}  // namespace

TEST_CASE("reconcile with only failing events left exits 3, even when they fail fast") {
  TestDb db;
  TempConfig cfg(kConfig);
  db.exec("SELECT pgrelay.emit('e', jsonb_build_object('fail', g > 10)) FROM generate_series(1, 14) g");
  // Retries come due 100-200 ms later, within the limit: the run waits for them
  // and ends with the failing events dead, not with "retried, still pending".
  auto r = run_pgrelay({"-d", db.url(), "-c", cfg.path, "reconcile", "--max-duration", "20s"});
  INFO(r.out << r.err);
  CHECK(r.code == 3);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'dead'") == 4);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 4);
  CHECK(contains(r.out, "dead 4 e via cmd"));
  CHECK(contains(r.out, "result: exit 3: 4 dead"));
}

TEST_CASE("reconcile delivers retries that come due within its limit in the same run and exits 0") {
  TestDb db;
  // Fails the first time for each event (a marker file per event id), then succeeds.
  char dir_template[] = "/tmp/pgrelay-reconcile-XXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  TempConfig cfg(R"({"handlers": {"cmd": {"type": "command", "timeout_ms": 5000,
      "command": ["sh", "-c", "id=$(sed 's/^{\"id\":\\([0-9]*\\).*/\\1/'); [ -e )" +
                 dir + R"(/$id ] && exit 0; touch )" + dir +
                 R"(/$id; exit 1"],
      "retry": {"max_attempts": 5, "base_ms": 200, "cap_ms": 300}}},
    "routes": [{"match": "*", "handlers": ["cmd"]}]})");
  db.exec("SELECT pgrelay.emit('e', '{}') FROM generate_series(1, 10)");
  auto r = run_pgrelay({"-d", db.url(), "-c", cfg.path, "reconcile", "--max-duration", "30s", "--json"});
  INFO(r.out << r.err);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0);
  CHECK(contains(r.out, "\"delivered\":10"));
  CHECK(contains(r.out, "\"retried\":10"));
  // Everything due within the run was delivered in the end: nothing is failing now.
  CHECK(r.code == 0);
  (void)std::system(("rm -rf '" + dir + "'").c_str());
}

TEST_CASE("reconcile keeps a limit shorter than a handler's timeout and gives the rest back unspent") {
  TestDb db;
  HttpReceiver rx;
  rx.respond_with([](const ReceivedRequest&) {
    Reply r;
    r.delay = milliseconds(2000);  // answers after 2 s
    return r;
  });
  TempConfig cfg(R"({"handlers": {"hook": {"type": "webhook", "url": ")" + rx.url() + R"(", "timeout_ms": 5000}},
    "routes": [{"match": "*", "handlers": ["hook"]}]})");
  db.exec("SELECT pgrelay.emit('e', '{}') FROM generate_series(1, 40)");
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run_pgrelay({"-d", db.url(), "-c", cfg.path, "reconcile", "--max-duration", "1s"});
  const auto took = std::chrono::steady_clock::now() - t0;
  INFO(r.out << r.err);
  CHECK(took < milliseconds(2500));  // the 1 s limit, not the 5 s timeout
  CHECK(r.code == 4);
  CHECK(contains(r.out, "result: exit 4: stopped at the time limit"));
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE attempts > 0") == 0);
}

TEST_CASE("reconcile waits for an expired lease that runs out within its limit and delivers that event") {
  TestDb db;
  TempConfig cfg(kConfig);
  db.exec("SELECT pgrelay.emit('e', '{}')");
  // As a relay that died holding it would leave it: processing, its lease running out in 1 s.
  db.exec(
      "UPDATE pgrelay.db_events SET status = 'processing', attempts = 1, claim_token = 1, lease_owner = 'dead-relay', "
      "next_attempt_at = now() + interval '1 second'");
  auto r = run_pgrelay({"-d", db.url(), "-c", cfg.path, "reconcile", "--max-duration", "10s", "--json"});
  INFO(r.out << r.err);
  CHECK(r.code == 0);
  CHECK(contains(r.out, "\"lease_expiries\":1"));
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0);
}

TEST_CASE("reconcile takes --max-duration as 30s, 5m or 1h and names a value it cannot read") {
  auto bad = run_pgrelay({"reconcile", "--max-duration", "5 minutes"});
  CHECK(bad.code == 2);
  CHECK(contains(bad.err, "--max-duration 5 minutes"));
  auto huge = run_pgrelay({"reconcile", "--max-duration", "48h"});
  CHECK(huge.code == 2);
}
