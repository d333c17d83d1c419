// The Prometheus rendering of delivery metrics and the breaker board.
#include <doctest/doctest.h>

#include "core/breaker_board.hpp"
#include "core/metrics.hpp"
#include "support/http_get.hpp"

using namespace pgrelay;
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

TEST_CASE("handlers report breaker states to the board, and forgetting a handler removes them") {
  BreakerBoard& b = BreakerBoard::global();
  b.report("hook-test", "https://a.example:443", "open", 5);
  b.report("hook-test", "https://b.example:443", "closed", 0);
  b.report("hook-test", "https://a.example:443", "half_open", 5);
  int seen = 0;
  for (const auto& r : b.all()) {
    if (r.handler != "hook-test") continue;
    ++seen;
    if (r.destination == "https://a.example:443") CHECK(r.state == "half_open");
  }
  CHECK(seen == 2);
  CHECK(breaker_state_value("open") == 2);
  CHECK(breaker_state_value("half_open") == 1);
  CHECK(breaker_state_value("closed") == 0);
  b.forget("hook-test");
  for (const auto& r : b.all()) CHECK(r.handler != "hook-test");
}
