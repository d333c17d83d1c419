// Delivery ids (core/event_source.hpp) end to end: what webhook-id and Nats-Msg-Id
// carry when events of several databases reach one receiver, on retries and replays.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <set>

#include "store/migrate.hpp"
#include "support/child_process.hpp"
#include "support/http_receiver.hpp"
#include "support/nats_server.hpp"
#include "support/recording_handler.hpp"
#include "support/test_db.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::seconds;

namespace {

// A database migrated from nothing, as `pgrelay migrate` makes one in production
// (TestDb's are copies of one template, so they share its prefix).
struct MigratedDb {
  std::string name = "fresh_" + std::to_string(::getpid()) + "_" + std::to_string(rand());
  std::string url;
  MigratedDb() {
    pqxx::connection admin(server_url());
    pqxx::nontransaction(admin).exec("CREATE DATABASE " + admin.quote_name(name));
    url = with_dbname(server_url(), name);
    pqxx::connection c(url);
    migrate(c);
  }
  ~MigratedDb() {
    pqxx::connection admin(server_url());
    pqxx::nontransaction(admin).exec("DROP DATABASE IF EXISTS " + admin.quote_name(name) + " WITH (FORCE)");
  }
  std::string sql(const std::string& query) const {
    pqxx::connection c(url);
    pqxx::work tx(c);
    const std::string v = tx.exec1(query)[0].as<std::string>();
    tx.commit();
    return v;
  }
};

HandlerConfig webhook(const std::string& url) {
  HandlerConfig h;
  h.name = "hook";
  h.type = "webhook";
  h.url = url;
  h.secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  h.retry = RetryPolicy{5, 100, 500, 0.0};
  h.timeout_ms = 3000;
  return h;
}

Config relay_config(const std::string& url, std::vector<HandlerConfig> handlers) {
  Config c = test_config(url);
  c.relay.done_retention_s = 3600;  // keep finished events, so they can be replayed
  for (const auto& h : handlers) c.routes.push_back(Route{"*", {h.name}});
  c.handlers = std::move(handlers);
  return c;
}

}  // namespace

TEST_CASE(
    "two databases' events with equal ids reach one receiver with distinct webhook-ids, kept on retry and replay") {
  MigratedDb a, b;
  const std::string prefix_a = a.sql("SELECT value FROM pgrelay.settings WHERE name = 'event_id_prefix'");
  const std::string prefix_b = b.sql("SELECT value FROM pgrelay.settings WHERE name = 'event_id_prefix'");
  REQUIRE(prefix_a.size() == 16);
  REQUIRE(prefix_a != prefix_b);
  HttpReceiver rx;
  rx.script({Reply::with_status(503, "busy")});  // the first delivery is retried
  Relay relay_a(relay_config(a.url, {webhook(rx.url())}));
  Relay relay_b(relay_config(b.url, {webhook(rx.url())}));
  RelayThread ta(relay_a), tb(relay_b);
  const std::string id_a = a.sql("SELECT pgrelay.emit('orders.paid', '{}')");
  REQUIRE(eventually([&] { return rx.request_count() == 2; }, seconds(20)));
  const std::string id_b = b.sql("SELECT pgrelay.emit('orders.paid', '{}')");
  CHECK(id_a == id_b);  // both databases' first event
  REQUIRE(eventually([&] { return rx.request_count() == 3; }, seconds(20)));
  REQUIRE(eventually([&] { return a.sql("SELECT status FROM pgrelay.db_events") == "done"; }, seconds(10)));
  const auto replay = run_pgrelay({"-d", a.url, "replay", "--all"});
  CHECK(replay.code == 0);
  REQUIRE(eventually([&] { return rx.request_count() == 4; }, seconds(20)));
  ta.stop();
  tb.stop();
  const auto reqs = rx.requests();
  REQUIRE(reqs.size() == 4);
  CHECK(reqs[0].header("webhook-id") == prefix_a + "-" + id_a);  // answered 503
  CHECK(reqs[1].header("webhook-id") == prefix_a + "-" + id_a);  // the retry
  CHECK(reqs[2].header("webhook-id") == prefix_b + "-" + id_b);  // the other database's event 1
  CHECK(reqs[3].header("webhook-id") == prefix_a + "-" + id_a);  // the replay
  std::set<std::string> distinct;
  for (const auto& r : reqs) distinct.insert(r.header("webhook-id"));
  CHECK(distinct.size() == 2);
}

TEST_CASE("an event routed to a webhook and to NATS carries one delivery id as webhook-id and Nats-Msg-Id") {
  TestDb db;
  HttpReceiver rx;
  NatsServer nats;
  JetStreamClient js(nats.url());
  js.add_stream("PGRELAY", {"pgrelay.>"});
  HandlerConfig bus;
  bus.name = "bus";
  bus.type = "nats";
  bus.nats_url = nats.url();
  bus.timeout_ms = 3000;
  Relay relay(relay_config(db.url(), {webhook(rx.url()), bus}));
  RelayThread t(relay);
  const int64_t id = db.scalar("SELECT pgrelay.emit('orders.paid', '{}')");
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'done'") == 1; },
                     seconds(20)));
  t.stop();
  REQUIRE(rx.request_count() == 1);
  const auto stored = js.messages("PGRELAY");
  REQUIRE(stored.size() == 1);
  CHECK(rx.requests()[0].header("webhook-id") == db.delivery_id(id));
  CHECK(stored[0].msg_id == db.delivery_id(id));
}
