// Builds handler instances from their config by kind.
#pragma once
#include <memory>

#include "core/config.hpp"
#include "handlers/handler.hpp"

namespace pgrelay {

// REQUIRES: `cfg` was validated by parse_config.
std::unique_ptr<Handler> make_handler(const HandlerConfig& cfg);

}  // namespace pgrelay
