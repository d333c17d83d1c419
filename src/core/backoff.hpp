// Retry policy and the capped exponential backoff it implies.
#pragma once
#include <chrono>
#include <cstdint>
#include <optional>

namespace pgrelay {

struct RetryPolicy {
  int max_attempts = 10;     // attempts before the event is dead (>= 1)
  int64_t base_ms = 1000;    // delay after the first failure
  int64_t cap_ms = 3600000;  // no delay ever exceeds this (default 1 h)
  double jitter = 0.2;       // fraction of the delay taken off at random (0..1)
};

// delay = min(cap, base * 2^(attempt-1)) minus up to `jitter` of it, where
// `attempt` is the attempt that just failed (1-based) and `unit_random` is in
// [0, 1). A server's Retry-After raises the delay to at least that much, still
// within the cap.
// REQUIRES: attempt >= 1.
std::chrono::milliseconds next_delay(const RetryPolicy& policy, int attempt, double unit_random,
                                     std::optional<std::chrono::milliseconds> retry_after = {});

}  // namespace pgrelay
