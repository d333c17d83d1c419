// CloudEvents built from event documents: attributes, both content modes, the
// payload passed through unchanged, and header values percent-encoded.
#include <doctest/doctest.h>

#include <rapidjson/document.h>

#include "handlers/cloudevent.hpp"

using namespace pgrelay;

namespace {

Event sample(std::optional<std::string> key, const std::string& headers = "{}") {
  Event e;
  e.id = 42;
  e.type = "orders.paid";
  e.key = std::move(key);
  e.json =
      R"({"id":42,"type":"orders.paid","key":"k","payload":{"big": 12345678901234567890123, "x": {"y": [1, {}]}},"headers":)" +
      headers + R"(,"created_at":"2024-05-01T12:34:56.123456+00:00","attempt":1})";
  return e;
}

std::string header(const CloudEventMessage& m, const std::string& name) {
  for (const auto& [n, v] : m.headers) {
    if (n == name) return v;
  }
  return "<absent>";
}

}  // namespace

TEST_CASE("binary mode: ce- headers carry the attributes and the body is the payload exactly as stored") {
  std::string why;
  const auto m = to_cloudevent(CloudEventsMode::binary, sample("order:42 ü"), "p-42", "/pgrelay/shop", &why);
  REQUIRE(m);
  CHECK(m->body == R"({"big": 12345678901234567890123, "x": {"y": [1, {}]}})");
  CHECK(header(*m, "ce-specversion") == "1.0");
  CHECK(header(*m, "ce-id") == "p-42");
  CHECK(header(*m, "ce-source") == "/pgrelay/shop");
  CHECK(header(*m, "ce-type") == "orders.paid");
  CHECK(header(*m, "ce-time") == "2024-05-01T12:34:56.123456+00:00");
  CHECK(header(*m, "ce-subject") == "order:42%20%C3%BC");
  CHECK(header(*m, "content-type") == "application/json");
  const auto bare = to_cloudevent(CloudEventsMode::binary, sample(std::nullopt), "p-42", "/s", &why);
  CHECK(header(*bare, "ce-subject") == "<absent>");
}

TEST_CASE("structured mode: one JSON object with the attributes, the trace context and the payload as data") {
  std::string why;
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const auto m = to_cloudevent(CloudEventsMode::structured, sample("order:42 ü", R"({"traceparent":")" + tp + "\"}"),
                               "p-42", "https://shop.example.com/o", &why);
  REQUIRE(m);
  CHECK(header(*m, "content-type") == "application/cloudevents+json; charset=utf-8");
  rapidjson::Document d;
  d.Parse(m->body.c_str());
  REQUIRE(d.IsObject());
  CHECK(std::string(d["specversion"].GetString()) == "1.0");
  CHECK(std::string(d["id"].GetString()) == "p-42");
  CHECK(std::string(d["source"].GetString()) == "https://shop.example.com/o");
  CHECK(std::string(d["type"].GetString()) == "orders.paid");
  CHECK(std::string(d["subject"].GetString()) == "order:42 ü");
  CHECK(std::string(d["time"].GetString()) == "2024-05-01T12:34:56.123456+00:00");
  CHECK(std::string(d["traceparent"].GetString()) == tp);
  CHECK_FALSE(d.HasMember("tracestate"));
  CHECK(m->body.find(R"("data":{"big": 12345678901234567890123, "x": {"y": [1, {}]}})") != std::string::npos);
  const auto bare = to_cloudevent(CloudEventsMode::structured, sample(std::nullopt), "p-42", "/s", &why);
  d.Parse(bare->body.c_str());
  CHECK_FALSE(d.HasMember("subject"));
  CHECK_FALSE(d.HasMember("traceparent"));
}

TEST_CASE("a document without a payload or created_at gives no CloudEvent and says why") {
  Event e = sample("k");
  e.json = R"({"id":42,"type":"orders.paid","payload":{}})";
  std::string why;
  CHECK_FALSE(to_cloudevent(CloudEventsMode::structured, e, "p-42", "/s", &why));
  CHECK(why == "cloudevents: the event document has no payload object or created_at");
}

TEST_CASE("the default source names the database, percent-encoded, and modes are named binary and structured") {
  CHECK(default_cloudevents_source("shop") == "/pgrelay/shop");
  CHECK(default_cloudevents_source("my db/ü") == "/pgrelay/my%20db%2F%C3%BC");
  CHECK(cloudevents_mode("") == CloudEventsMode::none);
  CHECK(cloudevents_mode("binary") == CloudEventsMode::binary);
  CHECK(cloudevents_mode("structured") == CloudEventsMode::structured);
  CHECK_FALSE(cloudevents_mode("batch"));
  CHECK(percent_encoded("a b\"%\x7f") == "a%20b%22%25%7F");
}
