// Checks an event's payload against its declared shape (config `event_types`).
#pragma once
#include <optional>
#include <string>

#include "core/config.hpp"

namespace pgrelay {

// Returns why the payload inside `event_json` (the event document) does not fit
// `decl`, e.g. `field "email" must be a string, got a number`; nullopt if it fits.
std::optional<std::string> check_payload(const EventTypeDecl& decl, const std::string& event_json);

}  // namespace pgrelay
