// The Prometheus rendering of delivery metrics, and breaker states from a real
// webhook handler through the board to /metrics.
#include <doctest/doctest.h>

#include <future>

#include "core/breaker_board.hpp"
#include "core/metrics.hpp"
#include "handlers/webhook_handler.hpp"
#include "http/admin_server.hpp"
#include "support/http_get.hpp"
#include "support/http_receiver.hpp"

using namespace pgrelay;
using pgrelay::test::closed_port;
using pgrelay::test::http_get;
using pgrelay::test::prom_value;

TEST_CASE("delivery counters are kept per event type and handler, with HELP and TYPE lines") {
  Metrics m;
  m.record_delivery("orders.paid", "billing", Metrics::Result::delivered, 0.004);
  m.record_delivery("orders.paid", "billing", Metrics::Result::delivered, 0.2);
  m.record_delivery("orders.paid", "billing", Metrics::Result::retried, 3);
  m.record_delivery("users.new", "mailer", Metrics::Result::dead, 0.01);
  std::string out;
  m.render(out);
  CHECK(prom_value(out, R"(pgrelay_deliveries_delivered_total{event_type="orders.paid",handler="billing"})") == 2);
  CHECK(prom_value(out, R"(pgrelay_deliveries_retried_total{event_type="orders.paid",handler="billing"})") == 1);
  CHECK(prom_value(out, R"(pgrelay_deliveries_dead_total{event_type="users.new",handler="mailer"})") == 1);
  CHECK(prom_value(out, R"(pgrelay_deliveries_dead_total{event_type="orders.paid",handler="billing"})") == 0);
  CHECK(out.find("# TYPE pgrelay_deliveries_delivered_total counter") != std::string::npos);
  CHECK(out.find("# HELP pgrelay_handler_latency_seconds ") != std::string::npos);
  const auto totals = m.handler_totals();
  REQUIRE(totals.size() == 2);
  CHECK(totals[0].handler == "billing");
  CHECK(totals[0].delivered == 2);
  CHECK(totals[0].latency_count == 3);
}

TEST_CASE("histogram buckets are cumulative and end with +Inf equal to the count") {
  Metrics m;
  for (double v : {0.0005, 0.003, 0.003, 0.7, 500.0}) m.record_delivery("t", "h", Metrics::Result::delivered, v);
  m.record_claim(3, 0);
  m.record_claim(300, 2);
  std::string out;
  m.render(out);
  CHECK(prom_value(out, R"(pgrelay_handler_latency_seconds_bucket{handler="h",le="0.001"})") == 1);
  CHECK(prom_value(out, R"(pgrelay_handler_latency_seconds_bucket{handler="h",le="0.005"})") == 3);
  CHECK(prom_value(out, R"(pgrelay_handler_latency_seconds_bucket{handler="h",le="1"})") == 4);
  CHECK(prom_value(out, R"(pgrelay_handler_latency_seconds_bucket{handler="h",le="300"})") == 4);
  CHECK(prom_value(out, R"(pgrelay_handler_latency_seconds_bucket{handler="h",le="+Inf"})") == 5);
  CHECK(prom_value(out, R"(pgrelay_handler_latency_seconds_count{handler="h"})") == 5);
  CHECK(prom_value(out, R"(pgrelay_claim_batch_size_bucket{le="5"})") == 1);
  CHECK(prom_value(out, R"(pgrelay_claim_batch_size_bucket{le="+Inf"})") == 2);
  CHECK(prom_value(out, "pgrelay_claim_batch_size_sum") == 303);
  CHECK(prom_value(out, "pgrelay_lease_expiries_total") == 2);
}

TEST_CASE("label values are escaped so a hostile event type cannot forge a sample") {
  Metrics m;
  m.record_delivery("a\"b\\c\nd", "h", Metrics::Result::delivered, 0.1);
  std::string out;
  m.render(out);
  CHECK(out.find(R"(event_type="a\"b\\c\nd")") != std::string::npos);
  for (size_t at = 0; (at = out.find('\n', at)) != std::string::npos; ++at) {
    const auto next = out.substr(at + 1, 7);
    CHECK((next.empty() || next.rfind("pgrelay", 0) == 0 || next.rfind("# ", 0) == 0));
  }
}

TEST_CASE("a webhook handler reports its breaker to the board, and the admin server's /metrics shows it open") {
  const uint16_t dead_port = closed_port();
  const std::string destination = "http://127.0.0.1:" + std::to_string(dead_port);
  HandlerConfig cfg;
  cfg.name = "hook-board-test";
  cfg.type = "webhook";
  cfg.url = destination + "/hook";
  cfg.timeout_ms = 2000;
  cfg.connect_timeout_ms = 500;
  cfg.breaker.failures = 2;
  cfg.breaker.cooldown_ms = 60000;
  AdminServerOptions o;
  o.listen = "127.0.0.1:0";
  o.database_url = "host=/nonexistent-pgrelay-socket-dir connect_timeout=1";  // no database: /metrics still answers
  AdminServer server(o, nullptr, {});
  server.start();
  const std::string labels = R"({handler="hook-board-test",destination=")" + destination + R"("})";
  {
    WebhookHandler h(cfg);
    std::string text = http_get(server.port(), "/metrics").body;
    CHECK(prom_value(text, "pgrelay_circuit_breaker_state" + labels) == 0);  // reported from the start, closed
    for (int64_t id = 1; id <= 3; ++id) {
      auto e = std::make_shared<Event>();
      e->id = id;
      e->type = "t";
      e->json = "{}";
      auto done = std::make_shared<std::promise<Outcome>>();
      auto f = done->get_future();
      h.deliver(e, [done](Outcome out) { done->set_value(std::move(out)); });
      REQUIRE(f.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
      CHECK(f.get().kind == (id <= 2 ? Outcome::Kind::retry : Outcome::Kind::defer));
    }
    text = http_get(server.port(), "/metrics").body;
    CHECK(prom_value(text, "pgrelay_circuit_breaker_state" + labels) == 2);
    CHECK(prom_value(text, "pgrelay_circuit_breaker_consecutive_failures" + labels) == 2);
  }
  // A handler that is gone leaves no stale sample behind.
  CHECK(prom_value(http_get(server.port(), "/metrics").body, "pgrelay_circuit_breaker_state" + labels) == -1);
  server.stop();
  CHECK(breaker_state_value("open") == 2);
  CHECK(breaker_state_value("half_open") == 1);
  CHECK(breaker_state_value("closed") == 0);
}
