// A circuit breaker for one destination: after `failures` consecutive failures
// it opens for `cooldown`, so a dead endpoint stops burning every event's
// attempts; then it lets exactly one probe through (half-open): a success
// closes it, a failure re-opens it for another cool-down.
//
// Owned by one handler; not thread-safe (the webhook handler uses it from its
// I/O thread only). Time comes from a Clock, so tests need no sleeping.
#pragma once
#include <chrono>
#include <cstdint>

#include "core/clock.hpp"

namespace pgrelay {

class CircuitBreaker {
 public:
  enum class State { closed, open, half_open };

  // What to do with one request.
  struct Decision {
    bool allowed = true;                // send it (when false: defer it, do not send)
    bool probe = false;                 // this request is the half-open probe
    std::chrono::milliseconds wait{0};  // when not allowed: how long to defer it
  };

  // `failures` = 0 disables the breaker (every request is allowed).
  // REQUIRES: `clock` outlives the breaker; cooldown_ms >= 0.
  CircuitBreaker(int failures, int64_t cooldown_ms, const Clock& clock = Clock::steady());

  // Asks before sending. While open: not allowed, wait = rest of the cool-down.
  // Once the cool-down passed: the first caller gets the probe; while the probe
  // is out, others wait min(cool-down, 1 s) (at least 100 ms) and then ask again.
  Decision allow();

  // Reports a request's result. Success is any answer that proves the endpoint
  // works (2xx, or a status that dead-letters the event); failure is a
  // retryable one (connect error, timeout, 429, 5xx).
  void record_success();
  void record_failure();

  State state() const;
  int consecutive_failures() const { return consecutive_failures_; }

 private:
  void open();

  const int threshold_;
  const std::chrono::milliseconds cooldown_;
  const Clock& clock_;
  State state_ = State::closed;
  int consecutive_failures_ = 0;
  Clock::time_point open_until_{};
  bool probe_out_ = false;
};

}  // namespace pgrelay
