// The circuit breaker's state machine, driven by a fake clock.
#include <doctest/doctest.h>

#include "handlers/circuit_breaker.hpp"

using namespace pgrelay;
using std::chrono::milliseconds;

namespace {
struct FakeClock : Clock {
  time_point t{};
  time_point now() const override { return t; }
  void advance(milliseconds d) { t += d; }
};
using State = CircuitBreaker::State;
}  // namespace

TEST_CASE("the breaker stays closed until failures in a row reach the threshold") {
  FakeClock clock;
  CircuitBreaker b(3, 1000, clock);
  b.record_failure();
  b.record_failure();
  CHECK(b.allow().allowed);
  b.record_success();  // a success resets the count
  b.record_failure();
  b.record_failure();
  CHECK(b.state() == State::closed);
  b.record_failure();
  CHECK(b.state() == State::open);
}

TEST_CASE("an open breaker defers requests for the rest of the cool-down") {
  FakeClock clock;
  CircuitBreaker b(2, 1000, clock);
  b.record_failure();
  b.record_failure();
  auto d = b.allow();
  CHECK_FALSE(d.allowed);
  CHECK(d.wait == milliseconds(1000));
  clock.advance(milliseconds(400));
  d = b.allow();
  CHECK_FALSE(d.allowed);
  CHECK(d.wait == milliseconds(600));
}

TEST_CASE("after the cool-down exactly one probe goes through") {
  FakeClock clock;
  CircuitBreaker b(1, 1000, clock);
  b.record_failure();
  clock.advance(milliseconds(1000));
  CHECK(b.state() == State::half_open);
  const auto probe = b.allow();
  CHECK(probe.allowed);
  CHECK(probe.probe);
  for (int i = 0; i < 5; ++i) {
    const auto other = b.allow();
    CHECK_FALSE(other.allowed);
    CHECK(other.wait > milliseconds(0));
    CHECK(other.wait <= milliseconds(1000));
  }
}

TEST_CASE("a successful probe closes the breaker") {
  FakeClock clock;
  CircuitBreaker b(1, 1000, clock);
  b.record_failure();
  clock.advance(milliseconds(1000));
  REQUIRE(b.allow().probe);
  b.record_success();
  CHECK(b.state() == State::closed);
  CHECK(b.allow().allowed);
  CHECK(b.allow().allowed);
}

TEST_CASE("a failed probe re-opens the breaker for another cool-down") {
  FakeClock clock;
  CircuitBreaker b(1, 1000, clock);
  b.record_failure();
  clock.advance(milliseconds(1500));
  REQUIRE(b.allow().probe);
  clock.advance(milliseconds(200));
  b.record_failure();
  CHECK(b.state() == State::open);
  const auto d = b.allow();
  CHECK_FALSE(d.allowed);
  CHECK(d.wait == milliseconds(1000));
  clock.advance(milliseconds(1000));
  CHECK(b.allow().probe);
}

TEST_CASE("late failures of requests sent before the breaker opened do not extend the cool-down") {
  FakeClock clock;
  CircuitBreaker b(1, 1000, clock);
  b.record_failure();
  clock.advance(milliseconds(500));
  b.record_failure();
  CHECK(b.allow().wait == milliseconds(500));
}

TEST_CASE("a breaker with zero failures never opens") {
  FakeClock clock;
  CircuitBreaker b(0, 1000, clock);
  for (int i = 0; i < 100; ++i) b.record_failure();
  CHECK(b.state() == State::closed);
  CHECK(b.allow().allowed);
}
