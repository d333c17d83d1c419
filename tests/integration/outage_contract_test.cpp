// The contract across a database outage longer than the lease, with outcomes and
// sql work waiting for their ack: an sql handler's effect happens exactly once per
// event, and an event is done only when every routed handler really succeeded.
// Each case runs a real relay process against a cluster of its own that it stops.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <pqxx/pqxx>

#include "support/child_process.hpp"
#include "support/own_cluster.hpp"
#include "support/temp_config.hpp"

using namespace pgrelay::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

// One ledger row per call, no unique constraint: a function run twice shows as two rows.
constexpr const char* kLedger = R"sql(
CREATE SCHEMA app;
CREATE TABLE app.ledger (event_id bigint NOT NULL, token bigint, txid bigint DEFAULT txid_current());
CREATE FUNCTION app.record(ev jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO app.ledger (event_id) VALUES ((ev->>'id')::bigint);
  PERFORM pg_sleep(0.01);
END $$;
)sql";

struct Db {
  explicit Db(const std::string& url) : conn(url) {}
  pqxx::result exec(const std::string& sql) {
    pqxx::work tx(conn);
    auto r = tx.exec(sql);
    tx.commit();
    return r;
  }
  int64_t scalar(const std::string& sql) { return exec(sql)[0][0].as<int64_t>(); }
  pqxx::connection conn;
};

// Waits until an ack transaction is running the sql handler, so outcomes and sql
// work are in flight when the server goes away.
bool sql_ack_running(Db& db) {
  return db.scalar(
             "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pgrelay.call_handler(%' "
             "AND state = 'active' AND pid <> pg_backend_pid()") > 0;
}

// Stops the server for longer than the lease, then starts it again.
void outage(OwnCluster& cluster, milliseconds lease) {
  cluster.stop_server();
  std::this_thread::sleep_for(lease + milliseconds(1500));
  cluster.start_server();
}

}  // namespace

TEST_CASE("an outage longer than the lease during sql acks leaves exactly one ledger row per event") {
  OwnCluster cluster("outage-sql");
  auto db = std::make_unique<Db>(cluster.url());
  db->exec(kLedger);
  TempConfig cfg(R"({"relay": {"lease_ms": 3000, "wake": "poll"},
    "handlers": {"ledger": {"type": "sql", "function": "app.record", "timeout_ms": 2500, "retry": {"max_attempts": 20, "base_ms": 100}}},
    "routes": [{"match": "*", "handlers": ["ledger"]}]})");
  db->exec("SELECT pgrelay.emit('order.paid', jsonb_build_object('n', g)) FROM generate_series(1, 200) g");
  ChildProcess relay({PGRELAY_BIN, "-d", cluster.url(), "-c", cfg.path, "run"});
  INFO("relay's log: " << relay.err());
  REQUIRE(eventually([&] { return sql_ack_running(*db); }, seconds(15)));
  db.reset();
  outage(cluster, milliseconds(3000));
  db = std::make_unique<Db>(cluster.url());
  REQUIRE(eventually([&] { return db->scalar("SELECT count(*) FROM pgrelay.db_events") == 0; }, seconds(40)));
  relay.signal(SIGTERM);
  CHECK(relay.wait(seconds(10)) == 0);
  CHECK(db->scalar("SELECT count(*) FROM app.ledger") == 200);
  CHECK(db->scalar("SELECT count(DISTINCT event_id) FROM app.ledger") == 200);
  // It was this relay's own lease that ran out: nobody else claimed, nothing to blame on another relay.
  CHECK(relay.err().find("another claim") == std::string::npos);
  CHECK(relay.err().find("bookkeeping error") == std::string::npos);
}

TEST_CASE("a mixed route across an outage: no event is done unless its command handler succeeded") {
  OwnCluster cluster("outage-mixed");
  auto db = std::make_unique<Db>(cluster.url());
  db->exec(kLedger);
  char dir_template[] = "/tmp/pgrelay-mixed-XXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  const std::string runs = dir + "/runs.log";
  // The command fails for events whose payload says so, and logs each run with its exit code;
  // it is slow enough to be running when the relay comes back.
  const std::string script = dir + "/cmd.sh";
  std::ofstream(script) << "#!/bin/sh\nev=$(cat)\nid=$(printf '%s' \"$ev\" | sed 's/^{\"id\":\\([0-9]*\\).*/\\1/')\n"
                           "sleep 0.2\n"
                           "case \"$ev\" in *'\"fail\": true'*|*'\"fail\":true'*) echo \"$id rc1\" >> " +
                               runs +
                               "; exit 1;; esac\n"
                               "echo \"$id rc0\" >> " +
                               runs + "\nexit 0\n";
  ::chmod(script.c_str(), 0755);
  TempConfig cfg(R"({"relay": {"lease_ms": 1000, "wake": "poll", "ack_delay_ms": 200},
    "handlers": {
      "cmd_mixed": {"type": "command", "command": [")" +
                 script + R"("], "timeout_ms": 3000, "concurrency": 32,
                    "retry": {"max_attempts": 3, "base_ms": 100, "cap_ms": 200}},
      "sql_mixed": {"type": "sql", "function": "app.record", "timeout_ms": 2500, "retry": {"max_attempts": 20, "base_ms": 100}}},
    "routes": [{"match": "*", "handlers": ["cmd_mixed", "sql_mixed"]}]})");
  db->exec(
      "SELECT pgrelay.emit('order.paid', jsonb_build_object('n', g, 'fail', g % 3 = 0)) "
      "FROM generate_series(1, 60) g");
  ChildProcess relay({PGRELAY_BIN, "-d", cluster.url(), "-c", cfg.path, "run"});
  INFO("relay's log: " << relay.err());
  REQUIRE(eventually([&] { return sql_ack_running(*db); }, seconds(15)));
  db.reset();
  outage(cluster, milliseconds(1000));
  db = std::make_unique<Db>(cluster.url());
  REQUIRE(eventually([&] { return db->scalar("SELECT count(*) FROM pgrelay.db_events WHERE status <> 'dead'") == 0; },
                     seconds(40)));
  relay.signal(SIGTERM);
  CHECK(relay.wait(seconds(10)) == 0);
  // Every failing event ends dead; none is recorded as delivered.
  CHECK(db->scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'dead'") == 20);
  CHECK(db->scalar(
            "SELECT count(*) FROM pgrelay.db_events WHERE status = 'dead' AND NOT payload @> '{\"fail\": true}'") == 0);
  // The sql handler ran exactly once for each event that is not dead, and never for a failing one:
  // it records success only together with the event's outcome.
  CHECK(db->scalar("SELECT count(*) FROM app.ledger") == 60);
  CHECK(db->scalar("SELECT count(DISTINCT event_id) FROM app.ledger") == 60);
  const std::string log = "\n" + read_file(runs);
  for (const auto& row : db->exec("SELECT id FROM pgrelay.db_events WHERE status = 'dead'")) {
    CHECK(log.find("\n" + row[0].as<std::string>() + " rc0\n") == std::string::npos);
  }
  CHECK(relay.err().find("bookkeeping error") == std::string::npos);
  (void)std::system(("rm -rf '" + dir + "'").c_str());
}

TEST_CASE("a relay frozen past its lease claims its own events again without delivering them twice") {
  OwnCluster cluster("outage-stall");
  Db db(cluster.url());
  char dir_template[] = "/tmp/pgrelay-stall-XXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  const std::string runs = dir + "/runs.log";
  const std::string script = dir + "/cmd.sh";
  // Slow enough that the freeze lands while deliveries run; each run logs the event id once.
  std::ofstream(script) << "#!/bin/sh\nid=$(sed 's/^{\"id\":\\([0-9]*\\).*/\\1/')\nsleep 0.5\necho \"$id\" >> " + runs +
                               "\n";
  ::chmod(script.c_str(), 0755);
  TempConfig cfg(R"({"relay": {"lease_ms": 1000, "wake": "poll"},
    "handlers": {"cmd": {"type": "command", "command": [")" +
                 script + R"("], "timeout_ms": 3900, "concurrency": 40}},
    "routes": [{"match": "*", "handlers": ["cmd"]}]})");
  db.exec("SELECT pgrelay.emit('order.paid', jsonb_build_object('n', g)) FROM generate_series(1, 40) g");
  ChildProcess relay({PGRELAY_BIN, "-d", cluster.url(), "-c", cfg.path, "run"});
  REQUIRE(eventually([&] { return !read_file(runs).empty(); }, seconds(10)));
  relay.signal(SIGSTOP);
  std::this_thread::sleep_for(milliseconds(2000));  // past every lease it holds, within the handler timeout
  relay.signal(SIGCONT);
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0; }, seconds(30)));
  relay.signal(SIGTERM);
  CHECK(relay.wait(seconds(10)) == 0);
  std::istringstream lines(read_file(runs));
  std::map<std::string, int> times;
  for (std::string id; std::getline(lines, id);) times[id]++;
  CHECK(times.size() == 40);
  for (const auto& [id, n] : times) {
    INFO("event " << id << "; relay's log: " << relay.err());
    CHECK(n == 1);
  }
  CHECK(relay.err().find("bookkeeping error") == std::string::npos);
  (void)std::system(("rm -rf '" + dir + "'").c_str());
}
