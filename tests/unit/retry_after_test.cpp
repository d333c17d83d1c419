// Retry-After: delta-seconds, the three HTTP-date forms, and what is refused.
#include <doctest/doctest.h>

#include "handlers/retry_after.hpp"

using namespace pgrelay;
using std::chrono::milliseconds;

namespace {
// Sun, 06 Nov 1994 08:49:37 GMT
const auto kDate = std::chrono::system_clock::from_time_t(784111777);
}  // namespace

TEST_CASE("Retry-After in seconds is a delay in seconds") {
  CHECK(parse_retry_after("2", kDate) == milliseconds(2000));
  CHECK(parse_retry_after("0", kDate) == milliseconds(0));
  CHECK(parse_retry_after(" 120 ", kDate) == milliseconds(120000));
}

TEST_CASE("Retry-After as an HTTP-date is the time left until that date") {
  const auto now = kDate - std::chrono::seconds(30);
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now) == milliseconds(30000));
  CHECK(parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now) == milliseconds(30000));
  CHECK(parse_retry_after("Sun Nov  6 08:49:37 1994", now) == milliseconds(30000));
}

TEST_CASE("Retry-After with a date in the past means retry now") {
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", kDate + std::chrono::hours(1)) == milliseconds(0));
}

TEST_CASE("a Retry-After that is neither seconds nor a date is ignored") {
  for (const char* v :
       {"", "soon", "-5", "1.5", "2s", "0x10", "Sun, 06 Nov 1994", "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 GMT extra"}) {
    CAPTURE(v);
    CHECK_FALSE(parse_retry_after(v, kDate).has_value());
  }
}

TEST_CASE("an absurdly large Retry-After is clamped instead of overflowing") {
  const auto d = parse_retry_after("99999999999999999999999", kDate);
  REQUIRE(d.has_value());
  CHECK(*d == milliseconds(365LL * 24 * 3600 * 1000));
}

// Found by tests/fuzz/fuzz_retry_after: from_time_t overflowed for years outside 1678-2262.
TEST_CASE("Retry-After dates far in the past or future give 0 or the clamp, without overflow") {
  CHECK(parse_retry_after("Sun, 06 Nov 0997 08:49:37 GMT", kDate) == milliseconds(0));
  CHECK(parse_retry_after("Sun, 06 Nov 1001 08:49:37 GMT", kDate) == milliseconds(0));
  const auto far = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", kDate);
  REQUIRE(far.has_value());
  CHECK(*far == milliseconds(365LL * 24 * 3600 * 1000));
}
