// The NATS subject an event is published to: template expansion and validity.
#include <doctest/doctest.h>

#include "handlers/nats_handler.hpp"

using pgrelay::nats_subject;

TEST_CASE("the subject template has every {type} replaced by the event type") {
  CHECK(nats_subject("pgrelay.{type}", "orders.created") == "pgrelay.orders.created");
  CHECK(nats_subject("events", "orders.created") == "events");
  CHECK(nats_subject("{type}.{type}", "a") == "a.a");
  CHECK(nats_subject("app.{type}.v1", "user:signup-done") == "app.user:signup-done.v1");
}

TEST_CASE("a subject with an empty token or a wildcard is refused rather than published") {
  CHECK(nats_subject("pgrelay.{type}", "a..b").empty());
  CHECK(nats_subject("pgrelay.{type}", "a.").empty());
  CHECK(nats_subject("pgrelay.*", "a").empty());
  CHECK(nats_subject("pgrelay.>", "a").empty());
  CHECK(nats_subject("{type}", "").empty());
  CHECK_FALSE(nats_subject("pgrelay.a*b", "x").empty());  // a '*' inside a token is literal
}
