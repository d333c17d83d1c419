// The interface of an in-process handler, and the per-handler delivery options.
// Most programs use on<T>() (typed.hpp) instead of implementing it.
#pragma once
#include <cstdint>
#include <functional>

#include "pgrelay/event.hpp"
#include "pgrelay/export.hpp"
#include "pgrelay/outcome.hpp"

namespace pgrelay::api {

// Exponential backoff between attempts; the same rules as a handler's "retry"
// key in the config file (config/README.md).
struct RetryPolicy {
  int max_attempts = 10;     // attempts before the event is dead (>= 1)
  int64_t base_ms = 1000;    // delay after the first failure (> 0)
  int64_t cap_ms = 3600000;  // no delay ever exceeds this (>= base_ms; default 1 h)
  double jitter = 0.2;       // fraction of the delay taken off at random (0..1)
};

struct HandlerOptions {
  RetryPolicy retry;
  // A delivery that has not called `done` by then is a failed attempt (> 0).
  int64_t timeout_ms = 30000;
};

class PGRELAY_API Handler {
 public:
  using Done = std::function<void(Outcome)>;
  virtual ~Handler();

  // Starts one delivery and calls `done` exactly once, from any thread. Runs on
  // the relay's thread, so it must not block for long: slow work belongs on the
  // handler's own threads. A `done` after the timeout is ignored. If deliver()
  // throws before calling `done`, the attempt counts as a retry with the
  // exception's message as the reason.
  virtual void deliver(Event event, Done done) = 0;

  // Called once when the relay stops: abandon work in progress.
  virtual void shutdown() {}
};

}  // namespace pgrelay::api
