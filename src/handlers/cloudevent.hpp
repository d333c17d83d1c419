// CloudEvents 1.0 (https://cloudevents.io) form of an event, for the webhook and
// nats handlers, in the bindings' binary or structured content mode:
//   id       the delivery id (core/event_source.hpp), as webhook-id and Nats-Msg-Id
//   source   the handler's cloudevents.source; default "/pgrelay/<database name>"
//   type     the event type          subject  its key (left out without one)
//   time     created_at: when the producing transaction started (PostgreSQL's now())
//   data     the event's payload, unchanged (datacontenttype application/json)
//   traceparent, tracestate: the Distributed Tracing extension, when the event has them
// binary:     ce-* headers (values percent-encoded as the HTTP binding asks), a
//             content-type of application/json, and the payload as the body.
// structured: a content-type of application/cloudevents+json; charset=utf-8 and the
//             CloudEvent as a JSON object.
// Pure functions; thread-safe.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/event.hpp"

namespace pgrelay {

enum class CloudEventsMode { none, binary, structured };

// "" -> none, "binary", "structured"; anything else -> nullopt.
std::optional<CloudEventsMode> cloudevents_mode(const std::string& name);

struct CloudEventMessage {
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case
  std::string body;
};

// The event as a CloudEvent; nullopt (and *why) when its document lacks the payload
// or created_at a CloudEvent needs. REQUIRES: mode != none.
std::optional<CloudEventMessage> to_cloudevent(CloudEventsMode mode, const Event& event, const std::string& id,
                                               const std::string& source, std::string* why);

// "/pgrelay/<database>", the database name percent-encoded where a URI needs it.
std::string default_cloudevents_source(const std::string& database);

// `v` with space, '"', '%' and every byte outside printable ASCII as %XX.
std::string percent_encoded(std::string_view v);

}  // namespace pgrelay
