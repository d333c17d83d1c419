// In-process typed handlers and declared event types, through the real relay.
#include <doctest/doctest.h>

#include <signal.h>

#include <mutex>
#include <pgrelay/pgrelay.hpp>
#include <thread>

#include "support/child_process.hpp"
#include "support/recording_handler.hpp"
#include "support/test_db.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::seconds;

namespace {

struct OrderPaid {
  int64_t order_id = 0;
  std::string email;
  static void read(PayloadReader& r, OrderPaid& out) {
    r.required("order_id", out.order_id);
    r.required("email", out.email);
  }
};

// The public API's relay on a thread of its own, stopped on scope exit.
class ApiRelayThread {
 public:
  explicit ApiRelayThread(api::Relay& relay)
      : relay_(relay), thread_([this] {
          try {
            relay_.run();
          } catch (const std::exception& e) {
            error_ = e.what();
          }
        }) {}
  ~ApiRelayThread() { stop(); }
  // Stops the relay; returns what run() threw, empty if nothing.
  std::string stop() {
    if (thread_.joinable()) {
      relay_.request_stop();
      thread_.join();
    }
    return error_;
  }

 private:
  api::Relay& relay_;
  std::string error_;
  std::thread thread_;
};

// test_config()'s settings, through the public Config.
api::Config api_test_config(const std::string& url) {
  api::Config c = api::Config::parse(
      R"({"relay": {"poll_interval_ms": 500, "lease_ms": 5000, "shutdown_timeout_ms": 2000}, "log": {"level": "warn"}})",
      api::Config::no_environment());
  c.set_database_url(url);
  return c;
}

}  // namespace

TEST_CASE("a typed handler receives its struct, and a malformed payload is dead with the field named") {
  TestDb db;
  api::Relay relay(api_test_config(db.url()));
  std::mutex m;
  std::vector<std::pair<int64_t, OrderPaid>> got;
  api::on<OrderPaid>(relay, "orders.paid", [&](const api::EventInfo& e, const OrderPaid& p) {
    std::lock_guard<std::mutex> l(m);
    got.emplace_back(e.id, p);
    return api::Outcome::ok();
  });
  ApiRelayThread t(relay);
  db.exec(R"(SELECT pgrelay.emit('orders.paid', '{"order_id": 42, "email": "a@b.c"}'))");
  db.exec(R"(SELECT pgrelay.emit('orders.paid', '{"order_id": "42", "email": "a@b.c"}'))");
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status <> 'dead'") == 0; },
                     seconds(10)));
  CHECK(t.stop() == "");
  CHECK(relay.stats().delivered == 1);
  CHECK(relay.stats().dead == 1);
  REQUIRE(got.size() == 1);
  CHECK(got[0].first == 1);
  CHECK(got[0].second.order_id == 42);
  CHECK(got[0].second.email == "a@b.c");
  auto dead = db.exec("SELECT id, attempts, last_error FROM pgrelay.db_events WHERE status = 'dead'");
  REQUIRE(dead.size() == 1);
  CHECK(dead[0][0].as<int>() == 2);
  CHECK(dead[0][1].as<int>() == 1);
  CHECK(dead[0][2].as<std::string>() ==
        "handler typed:orders.paid: payload does not fit orders.paid: field \"order_id\": expected an integer, got a "
        "string");
}

TEST_CASE("an event that fails its declared type is dead at once and no handler runs") {
  TestDb db;
  Config c = test_config(db.url());
  c.event_types.push_back(EventTypeDecl{"user.signed_up", {{"email", "string"}, {"user_id", "integer"}}});
  Relay relay(c);
  RecordingHandler* rec = add_recorder(relay);
  RelayThread t(relay);
  db.exec(R"(SELECT pgrelay.emit('user.signed_up', '{"email": "a@b.c", "user_id": 1}'))");
  db.exec(R"(SELECT pgrelay.emit('user.signed_up', '{"email": "a@b.c"}'))");
  db.exec(R"(SELECT pgrelay.emit('other', '{}'))");  // undeclared: passes through
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status <> 'dead'") == 0; },
                     seconds(10)));
  t.stop();
  CHECK(rec->count() == 2);
  auto dead = db.exec("SELECT id, last_error FROM pgrelay.db_events WHERE status = 'dead'");
  REQUIRE(dead.size() == 1);
  CHECK(dead[0][0].as<int>() == 2);
  CHECK(dead[0][1].as<std::string>() ==
        "payload does not match event_types.user.signed_up: field \"user_id\" is missing");
}

TEST_CASE("the typed handler example program builds and delivers a struct from a real database") {
  TestDb db;
  ChildProcess example({PGRELAY_EXAMPLE_BIN, db.url()});
  db.exec(R"(SELECT pgrelay.emit('orders.paid', '{"order_id": 7, "amount": 9.5, "customer": {"email": "x@y.z"}}'))");
  REQUIRE(
      eventually([&] { return example.out().find("order 7 paid 9.50 by x@y.z") != std::string::npos; }, seconds(10)));
  example.signal(SIGTERM);
  auto code = example.wait(seconds(10));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
}

TEST_CASE("the public API refuses a bad config, a taken handler name and options out of range, saying which") {
  try {
    api::Config::parse(R"({"relay": {"batch_size": "many"}})", api::Config::no_environment());
    FAIL("a bad config was accepted");
  } catch (const api::ConfigError& e) {
    CHECK(std::string(e.what()).find("relay.batch_size") != std::string::npos);
  }
  api::Relay relay(api_test_config("dbname=never_connected"));
  auto ok = [](const api::EventInfo&, const OrderPaid&) { return api::Outcome::ok(); };
  api::on<OrderPaid>(relay, "orders.paid", ok);
  CHECK_THROWS_WITH_AS(api::on<OrderPaid>(relay, "orders.paid", ok),
                       "add_handler: a handler named \"typed:orders.paid\" is already defined", std::invalid_argument);
  api::HandlerOptions zero_attempts;
  zero_attempts.retry.max_attempts = 0;
  CHECK_THROWS_WITH_AS(api::on<OrderPaid>(relay, "orders.other", ok, zero_attempts),
                       "add_handler: handler \"typed:orders.other\": retry.max_attempts must be at least 1",
                       std::invalid_argument);
  CHECK_THROWS_AS(relay.add_route("x", {"nobody"}), std::invalid_argument);
}
