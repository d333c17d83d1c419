// In-process typed handlers and declared event types, through the real relay.
#include <doctest/doctest.h>

#include <signal.h>

#include <mutex>
#include <pgrelay/pgrelay.hpp>

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

}  // namespace

TEST_CASE("a typed handler receives its struct; a malformed payload is dead with the field named") {
  TestDb db;
  Relay relay(test_config(db.url()));
  std::mutex m;
  std::vector<std::pair<int64_t, OrderPaid>> got;
  on<OrderPaid>(relay, "orders.paid", [&](const EventInfo& e, const OrderPaid& p) {
    std::lock_guard<std::mutex> l(m);
    got.emplace_back(e.id, p);
    return Outcome::ok();
  });
  RelayThread t(relay);
  db.exec(R"(SELECT pgrelay.emit('orders.paid', '{"order_id": 42, "email": "a@b.c"}'))");
  db.exec(R"(SELECT pgrelay.emit('orders.paid', '{"order_id": "42", "email": "a@b.c"}'))");
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status <> 'dead'") == 0; },
                     seconds(10)));
  t.stop();
  REQUIRE(got.size() == 1);
  CHECK(got[0].first == 1);
  CHECK(got[0].second.order_id == 42);
  CHECK(got[0].second.email == "a@b.c");
  auto dead = db.exec("SELECT id, attempts, last_error FROM pgrelay.db_events WHERE status = 'dead'");
  REQUIRE(dead.size() == 1);
  CHECK(dead[0][0].as<int>() == 2);
  CHECK(dead[0][1].as<int>() == 1);
  CHECK(dead[0][2].as<std::string>() ==
        "handler typed:orders.paid: payload does not fit orders.paid: field \"order_id\": expected an integer, got a string");
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
  CHECK(dead[0][1].as<std::string>() == "payload does not match event_types.user.signed_up: field \"user_id\" is missing");
}

TEST_CASE("the typed handler example program builds and delivers a struct from a real database") {
  TestDb db;
  ChildProcess example({PGRELAY_EXAMPLE_BIN, db.url()});
  db.exec(R"(SELECT pgrelay.emit('orders.paid', '{"order_id": 7, "amount": 9.5, "customer": {"email": "x@y.z"}}'))");
  REQUIRE(eventually([&] { return example.out().find("order 7 paid 9.50 by x@y.z") != std::string::npos; }, seconds(10)));
  example.signal(SIGTERM);
  auto code = example.wait(seconds(10));
  REQUIRE(code.has_value());
  CHECK(*code == 0);
}
