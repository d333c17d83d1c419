// Capped exponential backoff with subtractive jitter.
#include "core/backoff.hpp"

#include <algorithm>

namespace pgrelay {

std::chrono::milliseconds next_delay(const RetryPolicy& policy, int attempt, double unit_random,
                                     std::optional<std::chrono::milliseconds> retry_after) {
  const int64_t cap = std::max<int64_t>(0, policy.cap_ms);
  int64_t delay = std::max<int64_t>(0, policy.base_ms);
  // Doubling stops at the cap, so large attempt numbers cannot overflow.
  for (int i = 1; i < attempt && delay < cap; ++i) delay *= 2;
  delay = std::min(delay, cap);
  const double jitter = std::clamp(policy.jitter, 0.0, 1.0);
  const double r = std::clamp(unit_random, 0.0, 1.0);
  delay -= static_cast<int64_t>(static_cast<double>(delay) * jitter * r);
  if (retry_after) delay = std::max<int64_t>(delay, std::min<int64_t>(retry_after->count(), cap));
  return std::chrono::milliseconds(delay);
}

}  // namespace pgrelay
