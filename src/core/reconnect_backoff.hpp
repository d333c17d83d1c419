// How a long-lived connection comes back after it is lost or cannot be opened
// (the LISTEN connection, the wal waker's replication stream): the first retry
// soon, each later one twice as late up to a cap, and every wait drawn between
// half and all of the current step, so relays cut off by one outage do not all
// reconnect in the same instant. Once the connection is proven the steps start
// over. Pure: no clock, no I/O; the caller arms its own timer with next().
// Not thread-safe: one owner (the connection's thread).
#pragma once
#include <chrono>
#include <cstdint>
#include <random>

namespace pgrelay {

class ReconnectBackoff {
 public:
  struct Options {
    std::chrono::milliseconds first{100};  // the step of the first retry
    std::chrono::milliseconds max{5000};   // no step exceeds this
  };

  ReconnectBackoff();  // the default Options, a random seed
  // REQUIRES: 0 < options.first <= options.max.
  explicit ReconnectBackoff(Options options, uint64_t seed = std::random_device{}());

  // The wait before the next attempt, in [step/2, step]; then doubles the step (up to max).
  std::chrono::milliseconds next();
  // The connection is proven: the next wait is drawn from the first step again.
  void reset();
  // The step the next wait is drawn from.
  std::chrono::milliseconds step() const { return step_; }

 private:
  Options options_;
  std::chrono::milliseconds step_;
  std::mt19937_64 rng_;
};

}  // namespace pgrelay
