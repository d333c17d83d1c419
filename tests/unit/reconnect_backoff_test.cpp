// The reconnect policy the wake sources share (core/reconnect_backoff.hpp).
#include <doctest/doctest.h>

#include "core/reconnect_backoff.hpp"

using namespace pgrelay;
using std::chrono::milliseconds;

TEST_CASE("reconnect waits double from the first step up to the cap, each drawn from half to all of its step") {
  ReconnectBackoff b({milliseconds(100), milliseconds(1000)}, 42);
  const milliseconds steps[] = {milliseconds(100),  milliseconds(200),  milliseconds(400), milliseconds(800),
                                milliseconds(1000), milliseconds(1000), milliseconds(1000)};
  for (const auto step : steps) {
    CHECK(b.step() == step);
    const auto wait = b.next();
    CHECK(wait >= step / 2);
    CHECK(wait <= step);
  }
}

TEST_CASE("a proven connection makes the next reconnect start from the first step again") {
  ReconnectBackoff b({milliseconds(100), milliseconds(5000)}, 7);
  for (int i = 0; i < 10; ++i) b.next();
  CHECK(b.step() == milliseconds(5000));
  b.reset();
  CHECK(b.step() == milliseconds(100));
  CHECK(b.next() <= milliseconds(100));
}

TEST_CASE("reconnect waits are jittered, so relays cut off together do not return together") {
  ReconnectBackoff a({milliseconds(1000), milliseconds(1000)}, 1);
  ReconnectBackoff b({milliseconds(1000), milliseconds(1000)}, 2);
  int differ = 0;
  for (int i = 0; i < 20; ++i) differ += a.next() != b.next();
  CHECK(differ > 10);
}

TEST_CASE("the default reconnect policy runs from 100 ms to 5 s") {
  ReconnectBackoff b;
  CHECK(b.step() == milliseconds(100));
  for (int i = 0; i < 20; ++i) b.next();
  CHECK(b.step() == milliseconds(5000));
}
