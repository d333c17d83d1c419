// W3C trace context (https://www.w3.org/TR/trace-context/) as events carry it: the
// producing transaction's traceparent and tracestate, stored in the event's headers
// by emit() and the capture triggers (triggers/05_trace_context.sql), handed on by
// every delivery (webhook and NATS headers, command environment, the typed
// handler's event) and named in the relay's log lines for the event.
// Pure functions; thread-safe.
#pragma once
#include <string>
#include <string_view>

namespace pgrelay {

struct TraceContext {
  std::string traceparent;  // "00-<trace id>-<parent id>-<flags>"; empty: the event has none
  std::string tracestate;   // vendor data; only ever set with a traceparent

  bool empty() const { return traceparent.empty(); }
  // The 32 hex digits of the trace, what tracing UIs search by; empty without one.
  std::string trace_id() const { return empty() ? std::string() : traceparent.substr(3, 32); }
};

// The same rules as pgrelay.valid_traceparent()/valid_tracestate() in SQL, so a
// value put into db_events by hand is never sent on (a header with a CR LF in it,
// say) either.
bool valid_traceparent(std::string_view v);
bool valid_tracestate(std::string_view v);

// The trace context in an event document's "headers" object; empty when it has none
// or its traceparent is not valid (an invalid tracestate alone is left out). Cheap
// for events without one: it parses the document only if it mentions "traceparent".
TraceContext trace_context_of(const std::string& event_json);

}  // namespace pgrelay
