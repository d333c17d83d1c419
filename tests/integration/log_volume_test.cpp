// What an outage writes to the log: deferrals behind an open circuit are counted,
// not logged one per event per attempt (1,136 of 1,196 lines in one outage before).
#include <doctest/doctest.h>
#include <signal.h>

#include <thread>

#include "support/child_process.hpp"
#include "support/ports.hpp"
#include "support/temp_config.hpp"
#include "support/test_db.hpp"

using namespace pgrelay::test;
using std::chrono::seconds;

namespace {

size_t occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("deliveries deferred behind an open circuit are logged once with a count, not once per event") {
  TestDb db;
  const std::string dead_url = "http://127.0.0.1:" + std::to_string(free_port()) + "/hook";  // nothing listens
  TempConfig cfg(R"({"relay": {"lease_ms": 10000},
    "handlers": {"billing": {"type": "webhook", "url": ")" +
                 dead_url + R"(", "timeout_ms": 2000,
                             "circuit_breaker": {"failures": 3, "cooldown_ms": 500},
                             "retry": {"max_attempts": 1000, "base_ms": 100, "cap_ms": 200}}},
    "routes": [{"match": "*", "handlers": ["billing"]}]})");
  db.exec("SELECT pgrelay.emit('bill.e', jsonb_build_object('n', g)) FROM generate_series(1, 200) g");
  ChildProcess relay({PGRELAY_BIN, "-d", db.url(), "-c", cfg.path, "run"});
  std::this_thread::sleep_for(seconds(4));  // several cool-downs, every event deferred again and again
  relay.signal(SIGTERM);
  CHECK(relay.wait(seconds(10)) == 0);
  const std::string log = relay.err();
  INFO(log.substr(0, 3000));
  CHECK(occurrences(log, "deliveries deferred without an attempt") >= 1);
  CHECK(occurrences(log, "deliveries deferred without an attempt") <= 2);
  CHECK(occurrences(log, "\"outcome\":\"defer\"") == 0);
  CHECK(occurrences(log, "\n") < 60);  // the whole outage, not 200 events x attempts
}
