// CloudEvents deliveries (handlers/cloudevent.hpp) checked by an independent
// implementation: the CloudEvents SDK for JavaScript, pinned in tests/node and
// installed by scripts/test, parses and validates every webhook request and NATS
// message the relay sent, in binary and structured mode.
#include <doctest/doctest.h>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include "handlers/webhook_signature.hpp"
#include "support/child_process.hpp"
#include "support/http_receiver.hpp"
#include "support/nats_server.hpp"
#include "support/recording_handler.hpp"
#include "support/test_db.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::seconds;

namespace {

const char* kTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

struct SeenDelivery {
  std::map<std::string, std::string> headers;
  std::string body;
};

// Why the SDK cannot run here, or "" when it can: the only reason to skip is a
// machine without node; a missing tests/node/node_modules is a failure to install.
std::string node_missing() {
  ChildProcess p({"node", "--version"});
  const auto code = p.wait(std::chrono::seconds(20));
  return code && *code == 0 ? "" : "node is not installed (scripts/test installs it with apt when it can)";
}

// The SDK's verdict on `deliveries`: the parsed events' attributes, one object each.
rapidjson::Document parse_with_sdk(const std::vector<SeenDelivery>& deliveries) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartArray();
  for (const auto& d : deliveries) {
    w.StartObject();
    w.Key("headers");
    w.StartObject();
    for (const auto& [name, value] : d.headers) {
      w.Key(name.c_str());
      w.String(value.c_str());
    }
    w.EndObject();
    w.Key("body");
    w.String(d.body.data(), static_cast<rapidjson::SizeType>(d.body.size()));
    w.EndObject();
  }
  w.EndArray();
  const std::string input = "/tmp/pgrelay-ce-" + std::to_string(::getpid()) + ".json";
  std::ofstream(input) << buf.GetString();
  const std::string dir = std::string(PGRELAY_SOURCE_DIR) + "/tests/node";
  const bool installed = !read_file(dir + "/node_modules/cloudevents/package.json").empty();
  INFO("tests/node/node_modules is missing: run scripts/test, or npm ci in tests/node");
  REQUIRE(installed);
  ChildProcess p({"node", dir + "/cloudevents_check.js", input});
  const auto code = p.wait(std::chrono::seconds(60));
  std::remove(input.c_str());
  INFO("the CloudEvents SDK said: " << p.out() << p.err());
  REQUIRE(code.has_value());
  REQUIRE(*code == 0);
  rapidjson::Document doc;
  doc.Parse(p.out().c_str());
  REQUIRE(doc.IsArray());
  REQUIRE(doc.Size() == deliveries.size());
  return doc;
}

std::string str(const rapidjson::Value& v, const char* name) {
  const auto m = v.FindMember(name);
  return m != v.MemberEnd() && m->value.IsString() ? m->value.GetString() : "<null>";
}

std::string text(const TestDb& db, const std::string& sql) { return db.exec(sql)[0][0].as<std::string>(); }

// created_at as JavaScript prints a Date: UTC, milliseconds.
std::string js_time(const TestDb& db, int64_t id) {
  return text(db,
              "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
              "FROM pgrelay.db_events WHERE id = " +
                  std::to_string(id));
}

HandlerConfig webhook(const std::string& name, const std::string& url, const std::string& mode) {
  HandlerConfig h;
  h.name = name;
  h.type = "webhook";
  h.url = url;
  h.secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  h.cloudevents_mode = mode;
  h.timeout_ms = 3000;
  return h;
}

HandlerConfig nats(const std::string& name, const std::string& url, const std::string& subject,
                   const std::string& mode) {
  HandlerConfig h;
  h.name = name;
  h.type = "nats";
  h.nats_url = url;
  h.subject = subject;
  h.cloudevents_mode = mode;
  h.timeout_ms = 3000;
  return h;
}

Config relay_config(const TestDb& db, std::vector<HandlerConfig> handlers) {
  Config c = test_config(db.url());
  c.relay.done_retention_s = 3600;  // keep the rows, to compare created_at
  std::vector<std::string> names;
  for (const auto& h : handlers) names.push_back(h.name);
  c.routes.push_back(Route{"*", names});
  c.handlers = std::move(handlers);
  return c;
}

// Two events: one keyed, with a trace context and a number no double holds; one without a key.
std::pair<int64_t, int64_t> emit_two(const TestDb& db) {
  auto c = db.connect();
  pqxx::work tx(*c);
  tx.exec(std::string("SET LOCAL pgrelay.traceparent = '") + kTraceparent + "'");
  const int64_t keyed = tx.exec1(
                              "SELECT pgrelay.emit('orders.paid', '{\"n\": 1, \"big\": 12345678901234567890123, "
                              "\"note\": \"ünï\"}', 'order:42')")[0]
                            .as<int64_t>();
  tx.commit();
  const int64_t bare = db.scalar("SELECT pgrelay.emit('users.seen', '{}')");
  return {keyed, bare};
}

}  // namespace

TEST_CASE("webhook deliveries in binary and structured mode are CloudEvents the SDK accepts, signed as before") {
  const std::string why = node_missing();
  if (!why.empty()) {
    std::cerr << "SKIPPED (CloudEvents SDK check): " << why << "\n";
    MESSAGE("skipped: " << why);
    return;
  }
  TestDb db;
  HttpReceiver rx;
  auto binary = webhook("ce_binary", rx.url("/binary"), "binary");
  auto structured = webhook("ce_structured", rx.url("/structured"), "structured");
  structured.cloudevents_source = "https://shop.example.com/orders";
  Relay relay(relay_config(db, {binary, structured}));
  RelayThread t(relay);
  const auto [keyed, bare] = emit_two(db);
  REQUIRE(eventually([&] { return rx.request_count() == 4; }, seconds(20)));
  t.stop();

  const std::string key = *webhook_signing_key(binary.secret);
  std::vector<SeenDelivery> deliveries;
  std::vector<std::string> paths;
  for (const auto& r : rx.requests()) {
    const std::string expected =
        webhook_signature(key, r.header("webhook-id"), std::stoll(r.header("webhook-timestamp")), r.body);
    CHECK(r.header("webhook-signature") == expected);
    deliveries.push_back({r.headers, r.body});
    paths.push_back(r.target);
  }
  const rapidjson::Document events = parse_with_sdk(deliveries);
  for (rapidjson::SizeType i = 0; i < events.Size(); ++i) {
    const auto& e = events[i];
    const bool is_keyed = str(e, "type") == "orders.paid";
    const int64_t id = is_keyed ? keyed : bare;
    CAPTURE(paths[i]);
    CHECK(str(e, "specversion") == "1.0");
    CHECK(str(e, "id") == db.delivery_id(id));
    CHECK(deliveries[i].headers.at("webhook-id") == db.delivery_id(id));
    CHECK(str(e, "source") == (paths[i] == "/binary" ? "/pgrelay/" + db.name() : "https://shop.example.com/orders"));
    CHECK(str(e, "type") == (is_keyed ? "orders.paid" : "users.seen"));
    CHECK(str(e, "subject") == (is_keyed ? "order:42" : "<null>"));
    CHECK(str(e, "time") == js_time(db, id));
    CHECK(str(e, "datacontenttype") == "application/json");
    CHECK(e["data"].IsObject());
    if (is_keyed) {
      CHECK(e["data"]["n"].GetInt() == 1);
      CHECK(str(e["data"], "note") == "ünï");
      CHECK(deliveries[i].headers.at("traceparent") == kTraceparent);
      // The payload goes out as the database wrote it: no digit of the big number lost.
      CHECK(deliveries[i].body.find("12345678901234567890123") != std::string::npos);
      if (paths[i] == "/structured") CHECK(str(e, "traceparent") == kTraceparent);
    }
    if (paths[i] == "/binary") {
      CHECK(deliveries[i].body ==
            text(db, "SELECT payload::text FROM pgrelay.db_events WHERE id = " + std::to_string(id)));
    }
  }
}

TEST_CASE("NATS messages in binary and structured mode are CloudEvents the SDK accepts") {
  const std::string why = node_missing();
  if (!why.empty()) {
    std::cerr << "SKIPPED (CloudEvents SDK check): " << why << "\n";
    MESSAGE("skipped: " << why);
    return;
  }
  TestDb db;
  NatsServer server;
  JetStreamClient js(server.url());
  // One stream per mode: in one stream the second copy of an event (same Nats-Msg-Id) would be deduplicated.
  js.add_stream("CE_BIN", {"bin.>"});
  js.add_stream("CE_STR", {"str.>"});
  Relay relay(relay_config(db, {nats("bus_binary", server.url(), "bin.{type}", "binary"),
                                nats("bus_structured", server.url(), "str.{type}", "structured")}));
  RelayThread t(relay);
  const auto [keyed, bare] = emit_two(db);
  const bool all_stored =
      eventually([&] { return js.message_count("CE_BIN") == 2 && js.message_count("CE_STR") == 2; }, seconds(20));
  if (!all_stored) {
    MESSAGE("last errors: " << text(db, "SELECT coalesce(string_agg(last_error, ' | '), '') FROM pgrelay.db_events"));
  }
  REQUIRE(all_stored);
  t.stop();
  std::vector<SeenDelivery> deliveries;
  std::vector<std::string> subjects;
  auto stored = js.messages("CE_BIN");
  for (auto& m : js.messages("CE_STR")) stored.push_back(std::move(m));
  for (const auto& m : stored) {
    deliveries.push_back({m.headers, m.data});
    subjects.push_back(m.subject);
    CHECK(m.headers.count("content-type") == 1);
  }
  const rapidjson::Document events = parse_with_sdk(deliveries);
  for (rapidjson::SizeType i = 0; i < events.Size(); ++i) {
    const auto& e = events[i];
    const bool is_keyed = str(e, "type") == "orders.paid";
    const int64_t id = is_keyed ? keyed : bare;
    CAPTURE(subjects[i]);
    CHECK(str(e, "id") == db.delivery_id(id));
    CHECK(deliveries[i].headers.at("nats-msg-id") == db.delivery_id(id));
    CHECK(str(e, "source") == "/pgrelay/" + db.name());
    CHECK(str(e, "subject") == (is_keyed ? "order:42" : "<null>"));
    CHECK(str(e, "time") == js_time(db, id));
    CHECK(subjects[i].substr(0, 4) == (deliveries[i].headers.count("ce-id") ? "bin." : "str."));
    if (is_keyed) CHECK(e["data"]["n"].GetInt() == 1);
  }
}
