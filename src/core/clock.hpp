// A narrow monotonic clock, so time-based state machines (circuit breakers,
// expiries) are tested with a fake clock instead of sleeping (after LevelDB's Env).
#pragma once
#include <chrono>

namespace pgrelay {

// Thread-safety: implementations must allow now() from any thread.
class Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  virtual time_point now() const = 0;

  // The process-wide real clock (std::chrono::steady_clock); never destroyed.
  static const Clock& steady();
};

inline const Clock& Clock::steady() {
  struct Steady final : Clock {
    time_point now() const override { return std::chrono::steady_clock::now(); }
  };
  static const Steady* clock = new Steady;
  return *clock;
}

}  // namespace pgrelay
