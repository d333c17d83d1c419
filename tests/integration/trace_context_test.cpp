// W3C trace context from the producing transaction to every kind of delivery
// (core/trace_context.hpp, triggers/05_trace_context.sql): stored by emit() and the
// capture triggers, malformed values dropped without failing the producer, handed
// on as headers, environment and event fields, and named in the relay's log lines.
#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <thread>
#include <tuple>
#include <pgrelay/pgrelay.hpp>
#include <pqxx/errorhandler>

#include "support/child_process.hpp"
#include "support/http_receiver.hpp"
#include "support/nats_server.hpp"
#include "support/recording_handler.hpp"
#include "support/temp_config.hpp"
#include "support/test_db.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::seconds;

namespace {

const std::string kParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const std::string kOtherParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
const std::string kState = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

// The server's WARNINGs on one connection.
struct Warnings : pqxx::errorhandler {
  explicit Warnings(pqxx::connection_base& c) : pqxx::errorhandler(c) {}
  bool operator()(const char msg[]) noexcept override {
    text += msg;
    return true;
  }
  std::string text;
};

std::string headers_of(const TestDb& db, const std::string& where) {
  return db.exec("SELECT string_agg(headers::text, ' | ' ORDER BY id) FROM pgrelay.db_events WHERE " + where)[0][0]
      .as<std::string>();
}

std::string expected(const std::string& parent, const std::string& state = "") {
  return state.empty() ? "{\"traceparent\": \"" + parent + "\"}"
                       : "{\"tracestate\": \"" + state + "\", \"traceparent\": \"" + parent + "\"}";
}

// Emits one event with the trace context set in its transaction, and one without.
void emit_traced_and_plain(const TestDb& db) {
  auto c = db.connect();
  pqxx::work tx(*c);
  tx.exec("SET LOCAL pgrelay.traceparent = '" + kParent + "'");
  tx.exec("SET LOCAL pgrelay.tracestate = '" + kState + "'");
  tx.exec("SELECT pgrelay.emit('orders.paid', '{\"n\": 1}', 'order:1')");
  tx.commit();
  db.exec("SELECT pgrelay.emit('orders.paid', '{\"n\": 2}', 'order:2')");
}

}  // namespace

TEST_CASE("SET LOCAL pgrelay.traceparent reaches every event the transaction writes, by emit() and by capture") {
  TestDb db;
  db.exec(
      "CREATE TABLE orders (id int PRIMARY KEY, v text); SELECT pgrelay.track('orders');"
      "CREATE TABLE notes (id int, owner text); SELECT pgrelay.track('notes', key_columns => '{owner}');");
  {
    auto c = db.connect();
    pqxx::work tx(*c);
    tx.exec("SET LOCAL pgrelay.traceparent = '" + kParent + "'");
    tx.exec("SET LOCAL pgrelay.tracestate = '" + kState + "'");
    tx.exec("SELECT pgrelay.emit('a.emitted', '{}', 'k')");
    tx.exec("SELECT pgrelay.emit('a.own', '{}', 'k', jsonb_build_object('traceparent', '" + kOtherParent +
            "', 'x', 1))");
    tx.exec("INSERT INTO orders VALUES (1, 'a'), (2, 'b')");  // statement trigger
    tx.exec("UPDATE orders SET v = 'c' WHERE id = 1");        // row trigger
    tx.exec("INSERT INTO notes VALUES (1, 'ann')");           // row trigger: the key is not the primary key
    tx.exec("DELETE FROM orders WHERE id = 2");
    tx.commit();
  }
  db.exec("SELECT pgrelay.emit('b.later', '{}')");  // SET LOCAL ended with its transaction
  const std::string traced = expected(kParent, kState);
  CHECK(headers_of(db, "event_type = 'a.emitted'") == traced);
  CHECK(headers_of(db, "event_type = 'orders.insert'") == traced + " | " + traced);
  CHECK(headers_of(db, "event_type = 'orders.update'") == traced);
  CHECK(headers_of(db, "event_type = 'orders.delete'") == traced);
  CHECK(headers_of(db, "event_type = 'notes.insert'") == traced);
  // emit()'s own traceparent wins, without the transaction's tracestate.
  CHECK(headers_of(db, "event_type = 'a.own'") == "{\"x\": 1, \"traceparent\": \"" + kOtherParent + "\"}");
  CHECK(headers_of(db, "event_type = 'b.later'") == "{}");
}

TEST_CASE("a malformed traceparent or tracestate is dropped with a warning and the producer's transaction commits") {
  TestDb db;
  db.exec("CREATE TABLE orders (id int PRIMARY KEY); SELECT pgrelay.track('orders');");
  auto c = db.connect();
  Warnings warnings(*c);
  {
    pqxx::work tx(*c);
    tx.exec("SET LOCAL pgrelay.traceparent = '00-not-a-trace-01'");
    tx.exec("SELECT pgrelay.emit('bad.parent', '{}')");
    tx.exec("INSERT INTO orders VALUES (1)");
    tx.commit();
  }
  {
    pqxx::work tx(*c);
    tx.exec("SET LOCAL pgrelay.traceparent = '" + kParent + "'");
    tx.exec("SET LOCAL pgrelay.tracestate = 'Upper=case,\x01'");
    tx.exec("SELECT pgrelay.emit('bad.state', '{}')");
    tx.exec("SELECT pgrelay.emit('bad.header', '{}', NULL, '{\"traceparent\": 42, \"keep\": true}')");
    tx.commit();
  }
  CHECK(headers_of(db, "event_type IN ('bad.parent', 'orders.insert')") == "{} | {}");
  CHECK(headers_of(db, "event_type = 'bad.state'") == expected(kParent));
  CHECK(headers_of(db, "event_type = 'bad.header'") == "{\"keep\": true}");
  CHECK(warnings.text.find("traceparent '00-not-a-trace-01' is not a W3C traceparent") != std::string::npos);
  CHECK(warnings.text.find("is not a W3C tracestate; the event keeps only its traceparent") != std::string::npos);
  CHECK(warnings.text.find("traceparent '42' is not a W3C traceparent") != std::string::npos);
}

TEST_CASE(
    "webhook and NATS deliveries carry traceparent and tracestate headers, and a command gets them in its "
    "environment") {
  TestDb db;
  HttpReceiver rx;
  NatsServer nats;
  JetStreamClient js(nats.url());
  js.add_stream("PGRELAY", {"pgrelay.>"});
  const std::string out = "/tmp/pgrelay-trace-" + std::to_string(::getpid());
  Config c = test_config(db.url());
  HandlerConfig hook;
  hook.name = "hook";
  hook.type = "webhook";
  hook.url = rx.url();
  HandlerConfig bus;
  bus.name = "bus";
  bus.type = "nats";
  bus.nats_url = nats.url();
  HandlerConfig cmd;
  cmd.name = "cmd";
  cmd.type = "command";
  cmd.argv = {"sh", "-c",
              "cat > /dev/null; echo \"$PGRELAY_EVENT_KEY ${TRACEPARENT:-none} ${TRACESTATE:-none}\" >> " + out};
  cmd.concurrency = 1;
  c.handlers = {hook, bus, cmd};
  c.routes.push_back(Route{"*", {"hook", "bus", "cmd"}});
  Relay relay(c);
  // The relay's own trace context, as a traced supervisor would pass it: never the event's.
  ::setenv("TRACEPARENT", kOtherParent.c_str(), 1);
  RelayThread t(relay);
  emit_traced_and_plain(db);
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0; }, seconds(20)));
  t.stop();
  ::unsetenv("TRACEPARENT");

  const auto reqs = rx.requests();
  REQUIRE(reqs.size() == 2);
  for (const auto& r : reqs) {
    const bool traced = r.body.find("\"order:1\"") != std::string::npos;
    CHECK(r.header("traceparent") == (traced ? kParent : ""));
    CHECK(r.header("tracestate") == (traced ? kState : ""));
  }
  const auto msgs = js.messages("PGRELAY");
  REQUIRE(msgs.size() == 2);
  for (const auto& m : msgs) {
    const bool traced = m.data.find("\"order:1\"") != std::string::npos;
    CHECK(m.headers.count("traceparent") == (traced ? 1u : 0u));
    if (traced) CHECK(m.headers.at("traceparent") == kParent);
    if (traced) CHECK(m.headers.at("tracestate") == kState);
  }
  const std::string env = read_file(out);
  ::unlink(out.c_str());
  CHECK(env.find("order:1 " + kParent + " " + kState + "\n") != std::string::npos);
  CHECK(env.find("order:2 none none\n") != std::string::npos);
}

TEST_CASE("a typed handler's event and a sql handler's event document carry the trace context") {
  TestDb db;
  db.exec(
      "CREATE TABLE seen (key text, traceparent text, tracestate text);"
      "CREATE FUNCTION record_seen(ev jsonb) RETURNS void LANGUAGE sql AS "
      "$$ INSERT INTO seen VALUES (ev->>'key', ev->'headers'->>'traceparent', ev->'headers'->>'tracestate') $$;");
  api::Config config = api::Config::parse(
      R"({"relay": {"poll_interval_ms": 500, "lease_ms": 5000, "shutdown_timeout_ms": 2000}, "log": {"level": "warn"},
          "handlers": {"ledger": {"type": "sql", "function": "public.record_seen", "timeout_ms": 5000}},
          "routes": [{"match": "*", "handlers": ["ledger"]}]})",
      api::Config::no_environment());
  config.set_database_url(db.url());
  api::Relay relay(config);
  struct Nothing {
    static void read(PayloadReader&, Nothing&) {}
  };
  std::mutex m;
  std::vector<std::tuple<std::string, std::string, std::string>> typed;
  api::on<Nothing>(relay, "orders.paid", [&](const api::EventInfo& e, const Nothing&) {
    std::lock_guard<std::mutex> l(m);
    typed.emplace_back(*e.key, e.traceparent, e.tracestate);
    return api::Outcome::ok();
  });
  std::thread t([&] { relay.run(); });
  emit_traced_and_plain(db);
  const bool drained =
      eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events") == 0; }, seconds(20));
  relay.request_stop();
  t.join();
  REQUIRE(drained);
  std::sort(typed.begin(), typed.end());
  REQUIRE(typed.size() == 2);
  CHECK(typed[0] == std::make_tuple(std::string("order:1"), kParent, kState));
  CHECK(typed[1] == std::make_tuple(std::string("order:2"), std::string(), std::string()));
  CHECK(db.exec("SELECT traceparent FROM seen WHERE key = 'order:1'")[0][0].as<std::string>() == kParent);
  CHECK(db.exec("SELECT tracestate FROM seen WHERE key = 'order:1'")[0][0].as<std::string>() == kState);
  CHECK(db.exec("SELECT traceparent FROM seen WHERE key = 'order:2'")[0][0].is_null());
}

TEST_CASE("the relay's log lines for a failing traced event carry its trace_id, and an untraced event's none") {
  TestDb db;
  TempConfig config(R"({"log": {"level": "info", "format": "json"}, "relay": {"poll_interval_ms": 200},
    "handlers": {"fails": {"type": "command", "command": ["false"], "retry": {"max_attempts": 2, "base_ms": 50}}},
    "routes": [{"match": "*", "handlers": ["fails"]}]})");
  ChildProcess relay({PGRELAY_BIN, "-c", config.path, "-d", db.url(), "run"});
  emit_traced_and_plain(db);
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'dead'") == 2; },
                     seconds(20)));
  relay.signal(SIGTERM);
  REQUIRE(relay.wait(seconds(10)).has_value());
  const std::string log = relay.err();
  int traced_failed = 0, traced_dead = 0, untraced = 0;
  size_t at = 0;
  while (at < log.size()) {
    size_t end = log.find('\n', at);
    if (end == std::string::npos) end = log.size();
    const std::string line = log.substr(at, end - at);
    at = end + 1;
    const bool failed = line.find("\"delivery failed\"") != std::string::npos;
    const bool dead = line.find("\"event dead-lettered\"") != std::string::npos;
    if (!failed && !dead) continue;
    if (line.find("\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\"") != std::string::npos) {
      (failed ? traced_failed : traced_dead)++;
    } else if (line.find("trace_id") == std::string::npos) {
      untraced++;
    }
  }
  CAPTURE(log);
  CHECK(traced_failed >= 1);
  CHECK(traced_dead == 1);
  CHECK(untraced >= 2);  // the other event's failure and dead letter
}
