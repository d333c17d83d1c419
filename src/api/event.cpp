// Event's accessors: views of the relay's own event (core/event.hpp).
#include "api/access.hpp"

namespace pgrelay::api {

int64_t Event::id() const { return EventAccess::of(*this).id; }
const std::string& Event::type() const { return EventAccess::of(*this).type; }
const std::optional<std::string>& Event::key() const { return EventAccess::of(*this).key; }
const std::string& Event::json() const { return EventAccess::of(*this).json; }
int Event::attempt() const { return EventAccess::of(*this).attempt; }

}  // namespace pgrelay::api
