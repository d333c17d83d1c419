// Where handlers report the state of their circuit breakers, so that /metrics
// and the status page can show them without the admin server knowing any
// handler kind. A handler calls report() whenever a breaker changes state (or
// on every decision; repeated reports are cheap). Thread-safe.
//
// One board per process (BreakerBoard::global()); entries are keyed by handler
// name and destination, so two relays in one process that share a handler name
// share the entry.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace pgrelay {

struct BreakerReport {
  std::string handler;      // handler name from the config
  std::string destination;  // e.g. "https://hooks.example.com:443"; may be empty
  std::string state;        // "closed" | "open" | "half_open"
  int consecutive_failures = 0;
};

class BreakerBoard {
 public:
  static BreakerBoard& global();

  void report(const std::string& handler, const std::string& destination, const std::string& state,
              int consecutive_failures);
  // Removes every entry of a handler (at its shutdown).
  void forget(const std::string& handler);
  std::vector<BreakerReport> all() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, BreakerReport> entries_;
};

// 0 closed, 1 half-open, 2 open: the value of pgrelay_circuit_breaker_state.
int breaker_state_value(const std::string& state);

}  // namespace pgrelay
