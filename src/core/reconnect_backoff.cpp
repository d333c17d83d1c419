// The reconnect policy's steps and jitter (core/reconnect_backoff.hpp).
#include "core/reconnect_backoff.hpp"

#include <algorithm>

namespace pgrelay {

ReconnectBackoff::ReconnectBackoff() : ReconnectBackoff(Options{}) {}

ReconnectBackoff::ReconnectBackoff(Options options, uint64_t seed)
    : options_(options), step_(options.first), rng_(seed) {}

std::chrono::milliseconds ReconnectBackoff::next() {
  const int64_t step = step_.count();
  const int64_t half = step / 2;
  const auto wait =
      std::chrono::milliseconds(half + static_cast<int64_t>(rng_() % static_cast<uint64_t>(step - half + 1)));
  step_ = std::min(step_ * 2, options_.max);
  return wait;
}

void ReconnectBackoff::reset() { step_ = options_.first; }

}  // namespace pgrelay
