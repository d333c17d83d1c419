// Backoff: doubling, the cap, jitter bounds and Retry-After.
#include <doctest/doctest.h>

#include "core/backoff.hpp"

using namespace pgrelay;
using std::chrono::milliseconds;

TEST_CASE("backoff doubles from the base delay with each attempt") {
  RetryPolicy p{10, 1000, 3600000, 0.0};
  CHECK(next_delay(p, 1, 0.5) == milliseconds(1000));
  CHECK(next_delay(p, 2, 0.5) == milliseconds(2000));
  CHECK(next_delay(p, 5, 0.5) == milliseconds(16000));
}

TEST_CASE("backoff never exceeds the cap, even for huge attempt numbers") {
  RetryPolicy p{1000, 1000, 60000, 0.0};
  CHECK(next_delay(p, 7, 0.0) == milliseconds(60000));
  CHECK(next_delay(p, 1000, 0.99) == milliseconds(60000));
  CHECK(next_delay(p, 2147483647, 0.0) == milliseconds(60000));
}

TEST_CASE("jitter takes off at most its fraction of the delay") {
  RetryPolicy p{10, 1000, 3600000, 0.2};
  CHECK(next_delay(p, 1, 0.0) == milliseconds(1000));
  CHECK(next_delay(p, 1, 0.999) > milliseconds(800));
  CHECK(next_delay(p, 1, 0.5) == milliseconds(900));
}

TEST_CASE("Retry-After raises the delay but stays within the cap") {
  RetryPolicy p{10, 100, 5000, 0.0};
  CHECK(next_delay(p, 1, 0.0, milliseconds(2000)) == milliseconds(2000));
  CHECK(next_delay(p, 1, 0.0, milliseconds(60000)) == milliseconds(5000));
  CHECK(next_delay(p, 6, 0.0, milliseconds(10)) == milliseconds(3200));
}
