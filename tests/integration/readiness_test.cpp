// /readyz in each case that decides it: the database stopped and back, a routed
// backlog and its drain, the oldest due event's age, the LISTEN connection down, a
// stale sample. The database-stop case uses a throwaway cluster of its own
// (scripts/pg with its own PGRELAY_PG_DIR), never the shared test server.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <sstream>
#include <thread>
#include <string>

#include <pqxx/pqxx>

#include "faults/tcp_proxy.hpp"
#include "http/admin_server.hpp"

#include "store/connection.hpp"
#include "store/migrate.hpp"
#include "support/child_process.hpp"
#include "support/http_get.hpp"
#include "support/recording_handler.hpp"
#include "support/test_db.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

// A private cluster: started in the constructor, stopped and removed in the destructor.
class OwnCluster {
 public:
  OwnCluster() : dir_("/tmp/pgrelay-ready-" + std::to_string(::getpid())) {
    url_ = pg("start");
    while (!url_.empty() && url_.back() == '\n') url_.pop_back();
  }
  ~OwnCluster() { pg("stop"); }
  const std::string& url() const { return url_; }
  void stop_server() { pg("pg-stop"); }
  void start_server() { pg("pg-start"); }

 private:
  std::string pg(const std::string& verb) {
    const std::string cmd = "PGRELAY_PG_DIR='" + dir_ + "' '" PGRELAY_SOURCE_DIR "/scripts/pg' " + verb + " 2>&1";
    std::string out;
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
      char buf[512];
      while (std::fgets(buf, sizeof buf, p)) out += buf;
      const int rc = ::pclose(p);
      INFO("scripts/pg " << verb << ": " << out);
      REQUIRE(rc == 0);
    }
    return out;
  }
  std::string dir_;
  std::string url_;
};

}  // namespace

TEST_CASE("readiness flips to 503 when the database is stopped and back to 200 within 2 s when it returns") {
  OwnCluster cluster;
  REQUIRE(!cluster.url().empty());
  {
    auto conn = connect(cluster.url(), "test");
    migrate(*conn);
  }
  Config c = test_config(cluster.url());
  c.relay.wake = "poll";  // readiness here is about the database; the listener's own backoff is tested elsewhere
  c.admin.listen = "127.0.0.1:0";
  c.log.level = "error";
  Relay relay(c);
  relay.add_handler("rec", std::make_unique<RecordingHandler>());
  relay.add_route("*", {"rec"});
  RelayThread t(relay);
  REQUIRE(eventually([&] { return relay.admin_port() != 0; }, seconds(10)));
  const uint16_t port = relay.admin_port();
  REQUIRE(eventually([&] { return http_get(port, "/readyz").status == 200; }, seconds(10)));

  cluster.stop_server();
  HttpReply down;
  REQUIRE(eventually(
      [&] {
        down = http_get(port, "/readyz");
        return down.status == 503;
      },
      seconds(10)));
  CHECK(down.body.find("database") != std::string::npos);
  CHECK(http_get(port, "/healthz").status == 200);  // alive while not ready
  CHECK(http_get(port, "/metrics").body.find("pgrelay_database_up 0") != std::string::npos);

  cluster.start_server();
  const auto back = std::chrono::steady_clock::now();
  REQUIRE(eventually([&] { return http_get(port, "/readyz").status == 200; }, seconds(10)));
  const auto took = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - back);
  INFO("ready again after " << took.count() << " ms");
  CHECK(took <= milliseconds(2000));
  t.stop();
}

namespace {

// A relay with its admin server on a free port that is unready above 5 due events.
Config ready_config(const std::string& url) {
  Config c = test_config(url);
  c.admin.listen = "127.0.0.1:0";
  c.admin.ready_max_backlog = 5;
  return c;
}

}  // namespace

namespace {

// A handler that holds every delivery until released: what is due stays due for
// exactly as long as the test wants, however fast or slow the machine is.
std::unique_ptr<RecordingHandler> held_handler(std::atomic<bool>& released) {
  return std::make_unique<RecordingHandler>(
      [&released](const Event&) {
        while (!released.load()) std::this_thread::sleep_for(milliseconds(10));
        return Outcome::ok();
      },
      1);
}

// Sets the flag on the way out, so a failing test does not leave a delivery held
// (and the relay's destructor waiting for it) forever. Declare it after the relay.
struct ReleaseOnExit {
  std::atomic<bool>& released;
  ~ReleaseOnExit() { released = true; }
};

// /readyz once it says `expected` in its body, or the last answer after `timeout`.
HttpReply readyz_saying(uint16_t port, const std::string& expected, std::chrono::milliseconds timeout) {
  HttpReply r;
  eventually(
      [&] {
        r = http_get(port, "/readyz");
        return r.body.find(expected) != std::string::npos;
      },
      timeout);
  return r;
}

}  // namespace

TEST_CASE("readiness reports a routed backlog above the threshold with the reason in the body") {
  TestDb db;
  Config c = ready_config(db.url());
  c.relay.max_in_flight = 1;  // one held in flight: the other seven stay a backlog, however slow the sample
  std::atomic<bool> released{false};
  Relay relay(c);
  relay.add_handler("rec", held_handler(released));
  relay.add_route("handled.*", {"rec"});
  RelayThread t(relay);
  ReleaseOnExit release{released};
  REQUIRE(eventually([&] { return relay.admin_port() != 0; }, seconds(10)));
  const uint16_t port = relay.admin_port();
  REQUIRE(eventually([&] { return http_get(port, "/readyz").status == 200; }, seconds(10)));
  {
    auto conn = db.connect();
    pqxx::work tx(*conn);
    tx.exec("SELECT pgrelay.emit('handled.x', '{}') FROM generate_series(1, 8)");
    tx.exec("SELECT pgrelay.emit('nobody.routes.this', '{}') FROM generate_series(1, 50)");
    tx.commit();
  }
  HttpReply r;
  REQUIRE(eventually(
      [&] {
        r = http_get(port, "/readyz");
        return r.status == 503 && r.body.find("50 unrouted") != std::string::npos;  // once set aside
      },
      seconds(10)));
  INFO(r.body);
  CHECK(r.body.find("backlog 7") != std::string::npos);
  CHECK(r.body.find("ready_max_backlog 5") != std::string::npos);
  CHECK(r.body.find("50 unrouted") != std::string::npos);
}

TEST_CASE("a paused or unrouted backlog leaves a relay whose own routes are drained ready") {
  TestDb db;
  Config c = ready_config(db.url());
  c.admin.ready_max_oldest_pending_s = 1;
  Relay relay(c);
  RecordingHandler* rec = add_recorder(relay, "mine.*");
  RelayThread t(relay);
  REQUIRE(eventually([&] { return relay.admin_port() != 0; }, seconds(10)));
  const uint16_t port = relay.admin_port();
  {
    auto conn = db.connect();
    pqxx::work tx(*conn);
    tx.exec("SELECT pgrelay.pause('mine.held', 'test')");
    tx.exec("SELECT pgrelay.emit('mine.held', '{}') FROM generate_series(1, 40)");
    tx.exec("SELECT pgrelay.emit('theirs.x', '{}') FROM generate_series(1, 40)");
    tx.exec("SELECT pgrelay.emit('mine.ok', '{}') FROM generate_series(1, 3)");
    tx.commit();
  }
  REQUIRE(eventually([&] { return rec->count() == 3; }, seconds(10)));
  std::this_thread::sleep_for(milliseconds(2500));  // past ready_max_oldest_pending_s, a sample later
  const HttpReply r = http_get(port, "/readyz");
  INFO(r.body);
  CHECK(r.status == 200);
  const std::string metrics = http_get(port, "/metrics").body;
  CHECK(metrics.find("pgrelay_backlog_events 0") != std::string::npos);
  CHECK(metrics.find("pgrelay_paused_backlog_events 40") != std::string::npos);
  CHECK(metrics.find("pgrelay_unrouted_events 40") != std::string::npos);
}

TEST_CASE("readiness returns to 200 once a backlog above the threshold has drained") {
  TestDb db;
  Config c = ready_config(db.url());
  c.relay.max_in_flight = 1;
  std::atomic<bool> released{false};
  Relay relay(c);
  auto handler = held_handler(released);
  RecordingHandler* rec = handler.get();
  relay.add_handler("rec", std::move(handler));
  relay.add_route("*", {"rec"});
  RelayThread t(relay);
  ReleaseOnExit release{released};
  REQUIRE(eventually([&] { return relay.admin_port() != 0; }, seconds(10)));
  const uint16_t port = relay.admin_port();
  REQUIRE(eventually([&] { return http_get(port, "/readyz").status == 200; }, seconds(10)));
  db.exec("SELECT pgrelay.emit('x', '{}') FROM generate_series(1, 8)");
  const HttpReply busy = readyz_saying(port, "backlog 7 due events", seconds(15));
  CHECK(busy.status == 503);
  released = true;
  CHECK(eventually([&] { return http_get(port, "/readyz").status == 200; }, seconds(15)));
  CHECK(rec->count() == 8);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0);
}

TEST_CASE("readiness fails while the oldest due event has waited longer than ready_max_oldest_pending_s") {
  TestDb db;
  Config c = ready_config(db.url());
  c.admin.ready_max_backlog = 1000;  // the backlog is small: only its age can make the relay unready
  c.admin.ready_max_oldest_pending_s = 1;
  c.relay.max_in_flight = 1;
  std::atomic<bool> released{false};
  Relay relay(c);
  relay.add_handler("rec", held_handler(released));
  relay.add_route("*", {"rec"});
  RelayThread t(relay);
  ReleaseOnExit release{released};
  REQUIRE(eventually([&] { return relay.admin_port() != 0; }, seconds(10)));
  const uint16_t port = relay.admin_port();
  REQUIRE(eventually([&] { return http_get(port, "/readyz").status == 200; }, seconds(10)));
  db.exec("SELECT pgrelay.emit('x', '{}') FROM generate_series(1, 3)");
  const HttpReply old = readyz_saying(port, "oldest due event has waited", seconds(20));
  INFO(old.body);
  CHECK(old.status == 503);
  CHECK(old.body.find("admin.ready_max_oldest_pending_s 1") != std::string::npos);
  released = true;
  CHECK(eventually([&] { return http_get(port, "/readyz").status == 200; }, seconds(15)));
}

TEST_CASE("readiness fails while the LISTEN connection is down and recovers once it is back") {
  TestDb db;
  Config c = ready_config(db.url());
  c.relay.wake = "notify";
  Relay relay(c);
  RecordingHandler* rec = add_recorder(relay);
  RelayThread t(relay);
  REQUIRE(eventually([&] { return relay.admin_port() != 0; }, seconds(10)));
  const uint16_t port = relay.admin_port();
  REQUIRE(eventually([&] { return relay.listening() && http_get(port, "/readyz").status == 200; }, seconds(10)));
  // Keep the listener from coming back: no new connection to this database (the
  // relay's claim and sample connections stay open), then end the listener's session.
  pqxx::connection admin(server_url());
  pqxx::nontransaction(admin).exec("ALTER DATABASE " + admin.quote_name(db.name()) + " ALLOW_CONNECTIONS false");
  pqxx::nontransaction(admin).exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = " +
                                   admin.quote(db.name()) + " AND application_name = 'pgrelay-listener'");
  const HttpReply down = readyz_saying(port, "LISTEN connection is down", seconds(15));
  INFO(down.body);
  CHECK(down.status == 503);
  CHECK(http_get(port, "/healthz").status == 200);
  pqxx::nontransaction(admin).exec("ALTER DATABASE " + admin.quote_name(db.name()) + " ALLOW_CONNECTIONS true");
  CHECK(eventually([&] { return http_get(port, "/readyz").status == 200; }, seconds(20)));
  CHECK(relay.listening());
  db.exec("SELECT pgrelay.emit('after.listen', '{}')");
  CHECK(eventually([&] { return rec->count() == 1; }, seconds(10)));
}

namespace {

// `conninfo` (key=value form) with host and port replaced; "" for a URL.
std::string via(const std::string& conninfo, const std::string& host, uint16_t port) {
  if (conninfo.find("://") != std::string::npos) return "";
  std::istringstream in(conninfo);
  std::string tok, out;
  while (in >> tok) {
    if (tok.rfind("host=", 0) == 0 || tok.rfind("port=", 0) == 0) continue;
    out += tok + " ";
  }
  return out + "host=" + host + " port=" + std::to_string(port);
}

uint16_t port_of(const std::string& conninfo) {
  const size_t at = conninfo.find("port=");
  return at == std::string::npos ? 5432 : static_cast<uint16_t>(std::stoi(conninfo.substr(at + 5)));
}

}  // namespace

TEST_CASE("readiness fails once the last database sample is stale because the sampler hangs, and recovers") {
  TestDb db;
  // The admin server reaches the database through a proxy that can blackhole the
  // connection: the sample's query then never returns and never fails.
  faults::TcpProxy proxy(port_of(db.url()));
  const std::string url = via(db.url(), "127.0.0.1", proxy.port());
  if (url.empty()) {
    MESSAGE("the test server is named by a URL: stale-sample check skipped");
    return;
  }
  AdminServerOptions o;
  o.listen = "127.0.0.1:0";
  o.database_url = url;
  o.sample_interval_ms = 500;  // stale after 3 intervals + 5 s = 6.5 s
  AdminServer server(o, nullptr, {"relay-under-test", "poll", {}, {}, {}});
  server.start();
  struct PassOnExit {  // a failing check must not leave the sampler hung for the server's destructor
    faults::TcpProxy& proxy;
    ~PassOnExit() { proxy.set_mode(faults::ProxyMode::pass); }
  } pass_on_exit{proxy};
  const uint16_t port = server.port();
  REQUIRE(eventually([&] { return http_get(port, "/readyz").status == 200; }, seconds(10)));
  proxy.set_mode(faults::ProxyMode::stall);
  const HttpReply stale = readyz_saying(port, "no answer for over", seconds(30));
  INFO(stale.body);
  CHECK(stale.status == 503);
  CHECK(http_get(port, "/healthz").status == 200);  // alive, and /readyz answers while the sampler hangs
  proxy.set_mode(faults::ProxyMode::pass);
  CHECK(eventually([&] { return http_get(port, "/readyz").status == 200; }, seconds(30)));
  server.stop();
}
