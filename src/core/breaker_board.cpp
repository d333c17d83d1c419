// The process-wide board of circuit breaker states.
#include "core/breaker_board.hpp"

namespace pgrelay {

BreakerBoard& BreakerBoard::global() {
  static BreakerBoard board;
  return board;
}

void BreakerBoard::report(const std::string& handler, const std::string& destination, const std::string& state,
                          int consecutive_failures) {
  std::lock_guard<std::mutex> lock(mutex_);
  entries_[{handler, destination}] = BreakerReport{handler, destination, state, consecutive_failures};
}

void BreakerBoard::forget(const std::string& handler) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    it = it->first.first == handler ? entries_.erase(it) : std::next(it);
  }
}

std::vector<BreakerReport> BreakerBoard::all() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<BreakerReport> out;
  out.reserve(entries_.size());
  for (const auto& [k, v] : entries_) out.push_back(v);
  return out;
}

int breaker_state_value(const std::string& state) {
  if (state == "open") return 2;
  if (state == "half_open") return 1;
  return 0;
}

}  // namespace pgrelay
