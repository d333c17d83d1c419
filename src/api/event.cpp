// Event's accessors: views of the relay's own event (core/event.hpp).
#include "api/access.hpp"
#include "core/trace_context.hpp"

namespace pgrelay::api {

int64_t Event::id() const { return EventAccess::of(*this).id; }
const std::string& Event::type() const { return EventAccess::of(*this).type; }
const std::optional<std::string>& Event::key() const { return EventAccess::of(*this).key; }
const std::string& Event::json() const { return EventAccess::of(*this).json; }
int Event::attempt() const { return EventAccess::of(*this).attempt; }
std::string Event::traceparent() const { return trace_context_of(EventAccess::of(*this).json).traceparent; }
std::string Event::tracestate() const { return trace_context_of(EventAccess::of(*this).json).tracestate; }

}  // namespace pgrelay::api
