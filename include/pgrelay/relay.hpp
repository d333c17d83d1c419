// The relay, in your process: claims due events, delivers them to the handlers
// their type is routed to (the config's and those added here), records the
// outcomes with retries, backoff and dead letters, exactly like `pgrelay run`.
//
// Thread-safety: one thread calls run() or reconcile(); request_stop() and
// stats() may be called from any thread. add_handler/add_route come first.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pgrelay/config.hpp"
#include "pgrelay/export.hpp"
#include "pgrelay/handler.hpp"

namespace pgrelay::api {

// Counters since the relay was made.
struct Stats {
  int64_t claimed = 0;
  int64_t delivered = 0;       // events finished: every routed handler succeeded
  int64_t retried = 0;         // events rescheduled after a failure
  int64_t dead = 0;            // events dead-lettered
  int64_t released = 0;        // events given back at shutdown or deferred
  int64_t fenced = 0;          // outcomes refused because the lease was lost
  int64_t lease_expiries = 0;  // events taken over after another claim's lease ran out
  int64_t timeouts = 0;        // deliveries that hit their handler's timeout
  int64_t claim_batches = 0;   // claim round trips
};

struct ReconcileReport {
  int64_t delivered = 0;
  int64_t retried = 0;
  int64_t dead = 0;
  int64_t lease_expiries = 0;
  bool timed_out = false;  // max_duration passed with work left
};

class PGRELAY_API Relay {
 public:
  // Builds the handlers `config` names; connects only in run()/reconcile().
  explicit Relay(const Config& config);
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // Adds an in-process handler under `name`; routes refer to it by name.
  // Throws std::invalid_argument for a taken name or options out of range.
  // REQUIRES: before run()/reconcile().
  void add_handler(const std::string& name, std::unique_ptr<Handler> handler, const HandlerOptions& options = {});
  // Routes events matching `match` (exact type, "prefix.*" or "*") to
  // `handlers`. Events no route matches are not claimed.
  // Throws std::invalid_argument naming a handler that is not defined.
  // REQUIRES: before run()/reconcile().
  void add_route(const std::string& match, std::vector<std::string> handlers);

  // Runs until request_stop(); then stops claiming, waits up to
  // relay.shutdown_timeout_ms for deliveries in flight, records their outcomes
  // and gives the rest back without spending an attempt.
  // Throws on a database failure it cannot recover from at start-up.
  void run();

  // Delivers everything due until the backlog is empty (or only not-yet-due
  // retries remain) or `max_duration` passes. `progress` is called about once a
  // second with the events delivered so far.
  ReconcileReport reconcile(std::chrono::milliseconds max_duration,
                            const std::function<void(int64_t delivered)>& progress = {});

  // Thread-safe; not async-signal-safe (call it from a signal-waiting thread).
  void request_stop();

  Stats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pgrelay::api
