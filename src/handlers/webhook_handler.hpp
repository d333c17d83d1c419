// `webhook` handler: POSTs the event document (Event::json) to an http:// or
// https:// URL, signed per Standard Webhooks when a secret is configured (see
// handlers/webhook_signature.hpp for the headers and how "whsec_" secrets are
// read). Every request carries `webhook-id`, the delivery id (core/event_source.hpp),
// signed or not, and `traceparent`/`tracestate` when the event has a trace context
// (core/trace_context.hpp). With cloudevents set, the request is a CloudEvent
// (handlers/cloudevent.hpp) in binary or structured mode, and the signature covers
// that body.
//
// Outcomes: 2xx -> ok. A status in dead_statuses -> dead ("HTTP 410: <first 200
// bytes of the body>"). 408, 429, 5xx and any other status -> retry, honouring
// Retry-After (seconds or HTTP-date). Connect failures, broken connections and
// timeouts -> retry with the reason.
//
// One destination per handler, with a bounded pool of keep-alive connections
// (webhook_pool_size(): concurrency, or pool_size when set lower; requests
// beyond it queue here, and their timeout_ms includes the wait) and a circuit
// breaker: after breaker.failures consecutive retryable failures, deliveries
// are deferred for breaker.cooldown_ms without spending an attempt, then one
// probe goes through. The breaker's state and failure count are reported to
// BreakerBoard::global() under the handler's name and "scheme://host:port",
// from construction (closed) until destruction (forgotten).
// Pool and breaker belong to the handler: two handlers naming the same host
// keep separate connections and breakers, each with its own settings.
//
// Threading: the handler owns an io_context and one thread that runs it; all
// network work happens there. deliver() only posts and returns; `done` is called
// on that thread. shutdown() answers everything queued or in flight with a retry
// ("shutting down"); the destructor joins the thread.
#pragma once
#include <memory>

#include "core/clock.hpp"
#include "core/config.hpp"
#include "handlers/handler.hpp"

namespace pgrelay {

class WebhookHandler : public Handler {
 public:
  // Throws ConfigError for a config it cannot use (bad URL, a "whsec_" secret
  // that is not base64, an unreadable ca_file).
  // REQUIRES: `clock` (used by the circuit breaker) outlives the handler.
  explicit WebhookHandler(const HandlerConfig& config, const Clock& clock = Clock::steady());
  ~WebhookHandler() override;
  WebhookHandler(const WebhookHandler&) = delete;
  WebhookHandler& operator=(const WebhookHandler&) = delete;

  void deliver(std::shared_ptr<const Event> event, Done done) override;
  // REQUIRES: before the first deliver() (the I/O thread reads it unguarded).
  void set_source(const EventSource& source) override;
  void shutdown() override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pgrelay
