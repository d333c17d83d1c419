// The breaker's state machine: closed -> open -> half-open -> closed | open.
#include "handlers/circuit_breaker.hpp"

#include <algorithm>

namespace pgrelay {
namespace {
// While the probe is out, others ask again after min(cool-down, 1 s), but not
// sooner than 100 ms, so a tiny cool-down does not spin claims against the database.
constexpr std::chrono::milliseconds kProbeWait(1000);
constexpr std::chrono::milliseconds kMinProbeWait(100);
}  // namespace

CircuitBreaker::CircuitBreaker(int failures, int64_t cooldown_ms, const Clock& clock)
    : threshold_(std::max(0, failures)), cooldown_(std::max<int64_t>(0, cooldown_ms)), clock_(clock) {}

CircuitBreaker::State CircuitBreaker::state() const {
  if (state_ == State::open && clock_.now() >= open_until_) return State::half_open;
  return state_;
}

CircuitBreaker::Decision CircuitBreaker::allow() {
  if (threshold_ == 0 || state_ == State::closed) return {};
  const auto now = clock_.now();
  if (state_ == State::open && now < open_until_) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(open_until_ - now);
    return {false, false, std::max(left, std::chrono::milliseconds(1))};
  }
  state_ = State::half_open;
  if (!probe_out_) {
    probe_out_ = true;
    return {true, true, {}};
  }
  return {false, false, std::max(std::min(cooldown_, kProbeWait), kMinProbeWait)};
}

void CircuitBreaker::record_success() {
  state_ = State::closed;
  consecutive_failures_ = 0;
  probe_out_ = false;
}

void CircuitBreaker::record_failure() {
  if (threshold_ == 0) return;
  ++consecutive_failures_;
  if (state_ == State::half_open) {
    open();  // the probe (or a request sent before the breaker opened) failed
  } else if (state_ == State::closed && consecutive_failures_ >= threshold_) {
    open();
  }
  // Failures of requests sent before the breaker opened do not extend the cool-down.
}

void CircuitBreaker::open() {
  state_ = State::open;
  open_until_ = clock_.now() + cooldown_;
  probe_out_ = false;
}

}  // namespace pgrelay
