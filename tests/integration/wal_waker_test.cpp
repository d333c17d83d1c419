// The wal wake source: a temporary logical slot read as a wake signal, against a real PostgreSQL.
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <pqxx/pqxx>

#include "listen/wal_waker.hpp"
#include "support/test_db.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::milliseconds;

namespace {

struct Counts {
  std::atomic<int> wakes{0};
  std::atomic<int> connects{0};
};

WalWaker::Callbacks counting(Counts& c) {
  return {[&c] { ++c.wakes; }, [&c] { ++c.connects; }};
}

bool eventually(const std::function<bool()>& done, milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return true;
}

// Producers in wal mode send no NOTIFY: only the slot can wake the relay.
void use_wal_wake(const TestDb& db) { db.exec("SELECT pgrelay.set_wake('wal')"); }

// Slot creation waits for transactions open anywhere in the cluster, and other
// test processes share it, so streaming may take a while to begin.
void require_streaming(const WalWaker& w, const Counts& c, int connects = 1) {
  REQUIRE(eventually([&] { return c.connects.load() >= connects && w.alive(); }, milliseconds(30000)));
}

const char* kOurSlots =
    "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgrelay_wake_%' "
    "AND database = current_database()";

std::string run(const std::string& cmd) {
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[512];
    while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    if (::pclose(p) != 0) throw std::runtime_error("failed: " + cmd + "\n" + out);
  }
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// A throwaway cluster of its own with wal_level = replica, stopped and removed on destruction.
class ReplicaCluster {
 public:
  ReplicaCluster()
      : dir_(std::string(PGRELAY_SOURCE_DIR) + "/.pg-walreplica-" + std::to_string(::getpid())),
        pg_("PGRELAY_PG_DIR=" + dir_ + " " + PGRELAY_SOURCE_DIR + "/scripts/pg ") {
    url_ = run(pg_ + "start");
    std::ofstream(dir_ + "/data/postgresql.conf", std::ios::app) << "wal_level = replica\n";
    run(pg_ + "pg-stop");
    run(pg_ + "pg-start");
  }
  ~ReplicaCluster() {
    try {
      run(pg_ + "stop");
    } catch (...) {
      // Left behind in the checkout's ignored .pg-* folders at worst.
    }
  }
  const std::string& url() const { return url_; }

 private:
  std::string dir_, pg_, url_;
};

// "host=/x port=5 user=u dbname=d" as "postgresql://u@%2Fx:5/d".
std::string as_url(const std::string& kv) {
  std::istringstream in(kv);
  std::string tok, host, port, user, dbname;
  while (in >> tok) {
    const auto eq = tok.find('=');
    const std::string k = tok.substr(0, eq), v = tok.substr(eq + 1);
    if (k == "host") host = v;
    if (k == "port") port = v;
    if (k == "user") user = v;
    if (k == "dbname") dbname = v;
  }
  std::string encoded;
  for (char ch : host) encoded += ch == '/' ? std::string("%2F") : std::string(1, ch);
  return "postgresql://" + user + "@" + encoded + ":" + port + "/" + dbname;
}

// A database in wal wake mode and a waker streaming from it.
struct StreamingWaker {
  TestDb db;
  Counts c;
  WalWaker w{db.url(), counting(c)};
  StreamingWaker() {
    use_wal_wake(db);
    w.start();
    require_streaming(w, c);
  }
};

}  // namespace

TEST_CASE("an event emitted in wal wake mode wakes the wal waker within a second") {
  StreamingWaker f;
  TestDb& db = f.db;
  Counts& c = f.c;
  WalWaker& w = f.w;
  CHECK(c.wakes == 0);
  db.exec("SELECT pgrelay.emit('order.created', '{\"id\": 1}')");
  CHECK(eventually([&] { return c.wakes >= 1; }, milliseconds(1000)));
  CHECK(w.last_notification_age_s() >= 0);
  w.stop();
  CHECK_FALSE(w.alive());
}

TEST_CASE("changes other than inserts into pgrelay.db_events do not wake the wal waker") {
  TestDb db;
  use_wal_wake(db);
  db.exec("SELECT pgrelay.emit('before', '{}')");
  db.exec("CREATE TABLE public.other (x int); CREATE TABLE public.db_events (x int)");
  Counts c;
  WalWaker w(db.url(), counting(c));
  w.start();
  require_streaming(w, c);
  db.exec("INSERT INTO public.other VALUES (1)");
  db.exec("INSERT INTO public.db_events VALUES (1)");
  // What a relay does to claimed and delivered events must not wake it again.
  db.exec("UPDATE pgrelay.db_events SET status = 'processing'");
  db.exec("DELETE FROM pgrelay.db_events");
  db.exec("SELECT pgrelay.emit('marker', '{}')");
  // The stream is in commit order: once the marker wakes, the changes before it were read.
  REQUIRE(eventually([&] { return c.wakes >= 1; }, milliseconds(2000)));
  std::this_thread::sleep_for(milliseconds(200));
  CHECK(c.wakes == 1);
}

TEST_CASE("pgrelay.wake() in wal mode wakes the wal waker once it commits, and not when rolled back") {
  // dead retry, replay and resume change rows with UPDATE or DELETE, which never wake by themselves.
  StreamingWaker f;
  TestDb& db = f.db;
  Counts& c = f.c;
  pqxx::connection conn(db.url());
  {
    pqxx::work tx(conn);
    tx.exec("SELECT pgrelay.wake()");
    tx.abort();
  }
  db.exec("SELECT pg_logical_emit_message(true, 'someone-else', '')");
  std::this_thread::sleep_for(milliseconds(300));
  CHECK(c.wakes == 0);  // neither the rolled-back wake nor another prefix's message
  {
    pqxx::work tx(conn);
    tx.exec("UPDATE pgrelay.db_events SET attempts = 0");  // what `dead retry` does, on no rows here
    tx.exec("SELECT pgrelay.wake()");
    tx.commit();
  }
  REQUIRE(eventually([&] { return c.wakes >= 1; }, milliseconds(2000)));
  std::this_thread::sleep_for(milliseconds(300));
  CHECK(c.wakes == 1);  // the committed transaction only, once
}

TEST_CASE("a transaction that emits 1,000 events wakes the wal waker once") {
  StreamingWaker f;
  TestDb& db = f.db;
  Counts& c = f.c;
  db.exec("SELECT pgrelay.emit('bulk', jsonb_build_object('n', n)) FROM generate_series(1, 1000) AS n");
  REQUIRE(eventually([&] { return c.wakes >= 1; }, milliseconds(2000)));
  std::this_thread::sleep_for(milliseconds(500));
  CHECK(c.wakes == 1);  // one wake per transaction, at its COMMIT
}

TEST_CASE("the wal waker's slot is temporary and gone once it stops") {
  TestDb db;
  Counts c;
  WalWaker w(db.url(), counting(c));
  w.start();
  require_streaming(w, c);
  const std::string slot = w.slot_name();
  CHECK(slot.rfind("pgrelay_wake_", 0) == 0);
  CHECK(db.scalar(std::string(kOurSlots) + " AND temporary AND slot_name = '" + slot + "'") == 1);
  w.stop();
  CHECK(w.slot_name().empty());
  CHECK(eventually([&] { return db.scalar(kOurSlots) == 0; }, milliseconds(5000)));
}

TEST_CASE("a terminated walsender makes the wal waker reconnect with a new slot and wake again") {
  StreamingWaker f;
  TestDb& db = f.db;
  Counts& c = f.c;
  WalWaker& w = f.w;
  const std::string first_slot = w.slot_name();
  const int64_t killed = db.scalar(
      "SELECT count(pg_terminate_backend(active_pid)) FROM pg_replication_slots "
      "WHERE slot_name LIKE 'pgrelay_wake_%' AND database = current_database()");
  REQUIRE(killed == 1);
  require_streaming(w, c, 2);
  CHECK(c.connects == 2);
  CHECK(w.slot_name() != first_slot);
  CHECK(eventually([&] { return db.scalar(kOurSlots) == 1; }, milliseconds(5000)));  // the old one is gone
  const int before = c.wakes;
  db.exec("SELECT pgrelay.emit('after.reconnect', '{}')");
  CHECK(eventually([&] { return c.wakes > before; }, milliseconds(1000)));
}

TEST_CASE("the wal waker answers a walsender that asks for replies, so it is not timed out") {
  TestDb db;
  Counts c;
  // wal_sender_timeout is per connection: at 2 s the walsender asks for a reply
  // every second and hangs up without one, well inside the 10 s status interval.
  WalWaker w(db.url() + " options='-c wal_sender_timeout=2s'", counting(c));
  w.start();
  require_streaming(w, c);
  std::this_thread::sleep_for(milliseconds(5000));
  CHECK(w.alive());
  CHECK(c.connects == 1);
  CHECK(w.last_notification_age_s() < 2.0);
}

TEST_CASE("a probe of a healthy wal waker is answered and keeps it streaming") {
  TestDb db;
  Counts c;
  WalWaker w(db.url(), counting(c));
  w.start();
  require_streaming(w, c);
  std::this_thread::sleep_for(milliseconds(1500));
  w.probe();
  CHECK(eventually([&] { return w.last_notification_age_s() < 0.5; }, milliseconds(2000)));
  std::this_thread::sleep_for(milliseconds(3500));  // past the probe's 3 s deadline
  CHECK(w.alive());
  CHECK(c.connects == 1);
}

TEST_CASE("a URL connection string streams as well as key=value") {
  TestDb db;
  use_wal_wake(db);
  Counts c;
  WalWaker w(as_url(db.url()), counting(c));
  w.start();
  require_streaming(w, c);
  db.exec("SELECT pgrelay.emit('via.url', '{}')");
  CHECK(eventually([&] { return c.wakes >= 1; }, milliseconds(1000)));
}

namespace {

// A TCP port that accepts connections and closes them at once, counting them:
// a server that is there but never answers as PostgreSQL.
class ClosingPort {
 public:
  ClosingPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) continue;
        ++accepted_;
        ::close(c);
      }
    });
  }
  ~ClosingPort() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }
  int accepted() const { return accepted_.load(); }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

}  // namespace

TEST_CASE("an unreachable server is retried in the background, not an error of start") {
  ClosingPort server;
  Counts c;
  WalWaker w("host=127.0.0.1 port=" + std::to_string(server.port()) + " dbname=nowhere connect_timeout=1", counting(c));
  CHECK_NOTHROW(w.start());
  // start() checks once and the thread connects once; every further connection is a retry.
  CHECK(eventually([&] { return server.accepted() >= 5; }, milliseconds(30000)));
  CHECK_FALSE(w.alive());
  const auto t0 = std::chrono::steady_clock::now();
  w.stop();
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3));
  CHECK(c.connects == 0);
  // Stopped means stopped: no more attempts.
  const int after_stop = server.accepted();
  std::this_thread::sleep_for(milliseconds(300));
  CHECK(server.accepted() == after_stop);
}

TEST_CASE("a server without wal_level=logical makes start fail with an actionable error") {
  ReplicaCluster cluster;
  Counts c;
  WalWaker w(cluster.url(), counting(c));
  CHECK_THROWS_WITH_AS(w.start(),
                       "wake mode \"wal\" needs wal_level=logical (it is \"replica\"); set it in postgresql.conf "
                       "and restart, or use wake \"poll\"",
                       std::runtime_error);
  CHECK_FALSE(w.alive());
}
