// `nats` handler: publishes each event document to NATS JetStream and succeeds
// only on the stream's publish ack. Every message carries `Nats-Msg-Id: <delivery
// id>` (core/event_source.hpp: unique across databases, the same on every retry),
// so a retry inside the stream's duplicate window is stored once. With
// cloudevents set, the message is a CloudEvent (handlers/cloudevent.hpp: ce-*
// headers and the payload, or a structured JSON body); an event with a trace
// context carries `traceparent` (and `tracestate`) headers.
//
// Publishing is synchronous (js_PublishMsg) on a pool of `concurrency` worker
// threads: one blocking call per delivery maps one ack (or one failure) to one
// Outcome without correlating asynchronous ack callbacks with deliveries, the
// pool bounds the messages awaiting an ack, and each call gets its own deadline
// from the delivery's timeout. At the relay's concurrency (tens of deliveries)
// the extra threads cost less than the bookkeeping of js_PublishMsgAsync.
//
// The connection is opened by the first delivery, not at start-up, and is kept
// by the client library forever: if the server is down the library reconnects
// in the background and deliveries retry at once with a reason naming the URL.
//
// Thread-safety: deliver() and shutdown() may be called from any thread.
#pragma once
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "core/config.hpp"
#include "handlers/cloudevent.hpp"
#include "handlers/handler.hpp"
#include "handlers/worker_pool.hpp"

namespace pgrelay {

// The NATS subject for an event type: `subject_template` with every `{type}`
// replaced by `event_type`. Empty if the result is not a valid subject to publish
// to (empty token, whitespace, wildcard).
std::string nats_subject(const std::string& subject_template, const std::string& event_type);

class NatsHandler : public Handler {
 public:
  // REQUIRES: cfg.type == "nats", validated by parse_config. Uses cfg.nats_url,
  // cfg.subject, cfg.timeout_ms and cfg.concurrency. Does not connect yet.
  explicit NatsHandler(const HandlerConfig& cfg);
  ~NatsHandler() override;  // closes the connection and joins the workers
  NatsHandler(const NatsHandler&) = delete;
  NatsHandler& operator=(const NatsHandler&) = delete;

  void deliver(std::shared_ptr<const Event> event, Done done) override;
  // REQUIRES: before the first deliver() (workers read it unguarded).
  void set_source(const EventSource& source) override;
  // Closes the connection (publishes waiting for an ack fail at once) and
  // answers every queued delivery with a retry.
  void shutdown() override;

 private:
  struct Connection;  // the nats.c objects, kept out of this header

  Outcome publish(const Event& event, std::chrono::steady_clock::time_point deadline);
  // The connection, opened on first use; nullptr (and `why`) once shut down or
  // if it cannot even be set up.
  Connection* connection(std::string* why);

  const std::string url_;
  const std::string subject_;
  const int64_t timeout_ms_;
  const CloudEventsMode cloudevents_;
  const std::string cloudevents_source_;  // empty: the default, which names the database
  EventSource source_;

  std::mutex connection_mutex_;  // guards connection_ and closed_
  std::unique_ptr<Connection> connection_;
  bool closed_ = false;

  WorkerPool pool_;  // last: its workers are joined before the fields above go
};

}  // namespace pgrelay
