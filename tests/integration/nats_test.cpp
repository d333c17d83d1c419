// The nats handler end to end: events emitted into PostgreSQL, claimed by a real
// Relay, published to a real nats-server with JetStream; the stream is read back.
#include <doctest/doctest.h>

#include <atomic>
#include <cctype>
#include <future>
#include <set>
#include <string>

#include "handlers/nats_handler.hpp"
#include "support/child_process.hpp"
#include "support/nats_server.hpp"
#include "support/recording_handler.hpp"
#include "support/test_db.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

const char* kStream = "PGRELAY";

HandlerConfig nats_handler(const std::string& url, const std::string& subject = "pgrelay.{type}") {
  HandlerConfig h;
  h.name = "bus";
  h.type = "nats";
  h.nats_url = url;
  h.subject = subject;
  h.retry = RetryPolicy{1000, 100, 400, 0.0};
  h.timeout_ms = 3000;
  h.concurrency = 4;
  return h;
}

Config relay_config(const TestDb& db, HandlerConfig handler) {
  Config c = test_config(db.url());
  c.relay.done_retention_s = 3600;  // keep finished rows, to read attempts and reset them
  c.routes.push_back(Route{"*", {handler.name}});
  c.handlers.push_back(std::move(handler));
  return c;
}

int64_t count_where(const TestDb& db, const std::string& where) {
  return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE " + where);
}

std::set<std::string> event_ids(const TestDb& db) {
  std::set<std::string> ids;
  for (const auto& row : db.exec("SELECT id FROM pgrelay.db_events")) ids.insert(db.delivery_id(row[0].as<int64_t>()));
  return ids;
}

std::set<std::string> stream_ids(JetStreamClient& js) {
  std::set<std::string> ids;
  for (const auto& m : js.messages(kStream)) ids.insert(m.msg_id);
  return ids;
}

std::string last_error(const TestDb& db) {
  auto r = db.exec("SELECT coalesce(last_error, '') FROM pgrelay.db_events WHERE last_error IS NOT NULL LIMIT 1");
  return r.empty() ? std::string() : r[0][0].as<std::string>();
}

// The value of `"id"` in an event document.
std::string json_id(const std::string& json) {
  size_t i = json.find("\"id\"");
  if (i == std::string::npos) return {};
  i += 4;
  while (i < json.size() && (json[i] == ' ' || json[i] == ':')) ++i;
  size_t j = i;
  while (j < json.size() && std::isdigit(static_cast<unsigned char>(json[j]))) ++j;
  return json.substr(i, j - i);
}

// Delivers one event straight to a handler and waits for its outcome.
Outcome deliver_once(Handler& h, const Event& e) {
  auto p = std::make_shared<std::promise<Outcome>>();
  auto f = p->get_future();
  h.deliver(std::make_shared<const Event>(e), [p](Outcome o) { p->set_value(std::move(o)); });
  REQUIRE(f.wait_for(seconds(10)) == std::future_status::ready);
  return f.get();
}

}  // namespace

TEST_CASE("every event lands in the stream once, with its delivery id as Nats-Msg-Id and its document as body") {
  TestDb db;
  NatsServer nats;
  JetStreamClient js(nats.url());
  js.add_stream(kStream, {"pgrelay.>"});
  Relay relay(relay_config(db, nats_handler(nats.url())));
  RelayThread t(relay);
  db.exec(
      "SELECT pgrelay.emit(CASE WHEN g % 2 = 0 THEN 'orders.created' ELSE 'users.created' END, "
      "jsonb_build_object('n', g)) FROM generate_series(1, 300) g");
  REQUIRE(eventually([&] { return count_where(db, "status = 'done'") == 300; }, seconds(60)));
  t.stop();
  CHECK(js.message_count(kStream) == 300);
  const auto stored = js.messages(kStream);
  CHECK(stream_ids(js) == event_ids(db));
  int wrong = 0;
  for (const auto& m : stored) {
    const bool subject_ok = m.subject == "pgrelay.orders.created" || m.subject == "pgrelay.users.created";
    const bool id_ok = db.delivery_id(std::stoll(json_id(m.data))) == m.msg_id;
    if (!subject_ok || !id_ok || m.data.find("\"payload\"") == std::string::npos) wrong++;
  }
  CHECK(wrong == 0);
  CHECK(count_where(db, "attempts <> 1") == 0);
}

TEST_CASE("events delivered again after a retry are stored once, thanks to Nats-Msg-Id") {
  TestDb db;
  NatsServer nats;
  JetStreamClient js(nats.url());
  js.add_stream(kStream, {"pgrelay.>"});
  Relay relay(relay_config(db, nats_handler(nats.url())));
  RelayThread t(relay);
  db.exec("SELECT pgrelay.emit('orders.created', jsonb_build_object('n', g)) FROM generate_series(1, 50) g");
  REQUIRE(eventually([&] { return count_where(db, "status = 'done'") == 50; }, seconds(30)));
  REQUIRE(js.message_count(kStream) == 50);
  // What a crash or an expired lease after the publish would do: deliver the same events again.
  db.exec(
      "UPDATE pgrelay.db_events SET status = 'pending', next_attempt_at = now(), handlers_done = '{}', "
      "finished_at = NULL, lease_owner = NULL, claim_token = NULL");
  REQUIRE(eventually([&] { return count_where(db, "status = 'done' AND attempts = 2") == 50; }, seconds(30)));
  t.stop();
  CHECK(js.message_count(kStream) == 50);
  CHECK(stream_ids(js) == event_ids(db));
}

TEST_CASE("the same event published twice by the handler is acknowledged both times and stored once") {
  NatsServer nats;
  JetStreamClient js(nats.url());
  js.add_stream(kStream, {"pgrelay.>"});
  NatsHandler handler(nats_handler(nats.url()));
  Event e;
  e.id = 4242;
  e.type = "orders.created";
  e.json = R"({"id":4242,"type":"orders.created","payload":{}})";
  e.attempt = 1;
  CHECK(deliver_once(handler, e).is_ok());
  e.attempt = 2;
  CHECK(deliver_once(handler, e).is_ok());
  CHECK(js.message_count(kStream) == 1);
  const auto stored = js.messages(kStream);
  REQUIRE(stored.size() == 1);
  CHECK(stored[0].msg_id == "4242");
  CHECK(stored[0].subject == "pgrelay.orders.created");
  CHECK(stored[0].data == e.json);
}

TEST_CASE("with the NATS server down at start, deliveries retry naming the server and succeed once it is up") {
  TestDb db;
  NatsServer nats;
  {
    JetStreamClient js(nats.url());
    js.add_stream(kStream, {"pgrelay.>"});
  }
  nats.stop();
  Relay relay(relay_config(db, nats_handler(nats.url())));
  RelayThread t(relay);
  db.exec("SELECT pgrelay.emit('orders.created', jsonb_build_object('n', g)) FROM generate_series(1, 5) g");
  REQUIRE(eventually([&] { return count_where(db, "attempts >= 2 AND status <> 'done'") == 5; }, seconds(20)));
  const std::string err = last_error(db);
  INFO("last_error: ", err);
  CHECK(err.find("nats: not connected to " + nats.url()) != std::string::npos);
  CHECK(count_where(db, "status = 'dead'") == 0);
  nats.start();
  REQUIRE(eventually([&] { return count_where(db, "status = 'done'") == 5; }, seconds(30)));
  t.stop();
  JetStreamClient js(nats.url());
  CHECK(js.message_count(kStream) == 5);
  CHECK(stream_ids(js) == event_ids(db));
}

TEST_CASE("when the NATS server goes away while connected, deliveries retry and the client reconnects by itself") {
  TestDb db;
  NatsServer nats;
  {
    JetStreamClient js(nats.url());
    js.add_stream(kStream, {"pgrelay.>"});
  }
  Relay relay(relay_config(db, nats_handler(nats.url())));
  RelayThread t(relay);
  db.exec("SELECT pgrelay.emit('orders.created', '{\"n\": 0}')");
  REQUIRE(eventually([&] { return count_where(db, "status = 'done'") == 1; }, seconds(20)));
  nats.stop();
  db.exec("SELECT pgrelay.emit('orders.created', jsonb_build_object('n', g)) FROM generate_series(1, 5) g");
  REQUIRE(eventually([&] { return count_where(db, "attempts >= 2 AND status <> 'done'") == 5; }, seconds(20)));
  const std::string err = last_error(db);
  INFO("last_error: ", err);
  CHECK(err.find("nats: ") != std::string::npos);
  CHECK(err.find(nats.url()) != std::string::npos);
  nats.start();
  REQUIRE(eventually([&] { return count_where(db, "status = 'done'") == 6; }, seconds(30)));
  t.stop();
  JetStreamClient js(nats.url());
  CHECK(js.message_count(kStream) == 6);
  CHECK(stream_ids(js) == event_ids(db));
}

TEST_CASE("a subject no stream captures retries with a reason naming the subject until a stream is created") {
  TestDb db;
  NatsServer nats;
  JetStreamClient js(nats.url());
  js.add_stream(kStream, {"pgrelay.>"});
  Relay relay(relay_config(db, nats_handler(nats.url(), "elsewhere.{type}")));
  RelayThread t(relay);
  db.exec("SELECT pgrelay.emit('orders.created', '{}')");
  REQUIRE(eventually([&] { return count_where(db, "attempts >= 2") == 1; }, seconds(20)));
  const std::string err = last_error(db);
  INFO("last_error: ", err);
  CHECK(err.find("no stream matches subject \"elsewhere.orders.created\"") != std::string::npos);
  CHECK(count_where(db, "status = 'pending'") == 1);
  // The operator creates the stream; the next retry succeeds.
  js.add_stream("ELSEWHERE", {"elsewhere.>"});
  REQUIRE(eventually([&] { return count_where(db, "status = 'done'") == 1; }, seconds(20)));
  t.stop();
  CHECK(js.message_count("ELSEWHERE") == 1);
  CHECK(js.message_count(kStream) == 0);
}

TEST_CASE("shutdown answers a publish waiting for its ack and every queued delivery with a retry at once") {
  NatsServer nats;
  JetStreamClient js(nats.url());
  js.add_stream(kStream, {"pgrelay.>"});
  HandlerConfig cfg = nats_handler(nats.url());
  cfg.concurrency = 1;
  cfg.timeout_ms = 20000;
  std::mutex m;
  std::vector<Outcome> outcomes;
  NatsHandler handler(cfg);
  Event e;
  e.id = 1;
  e.type = "orders.created";
  e.json = R"({"id":1})";
  REQUIRE(deliver_once(handler, e).is_ok());  // connected
  nats.pause();                               // publishes now wait for an ack that never comes
  for (int i = 2; i <= 4; ++i) {
    Event ev = e;
    ev.id = i;
    handler.deliver(std::make_shared<const Event>(ev), [&](Outcome o) {
      std::lock_guard<std::mutex> l(m);
      outcomes.push_back(std::move(o));
    });
  }
  std::this_thread::sleep_for(milliseconds(300));
  {
    std::lock_guard<std::mutex> l(m);
    std::string early;
    for (const auto& o : outcomes) early += o.reason + "; ";
    INFO("answered before shutdown: ", early);
    REQUIRE(outcomes.empty());
  }
  const auto started = std::chrono::steady_clock::now();
  handler.shutdown();
  REQUIRE(eventually(
      [&] {
        std::lock_guard<std::mutex> l(m);
        return outcomes.size() == 3;
      },
      seconds(5)));
  CHECK(std::chrono::steady_clock::now() - started < seconds(2));
  for (const auto& o : outcomes) {
    CHECK(o.kind == Outcome::Kind::retry);
    CHECK(o.reason == "nats: relay is shutting down");
  }
  CHECK(deliver_once(handler, e).reason == "nats: relay is shutting down");
  nats.resume();
}
