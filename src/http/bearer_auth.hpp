// Bearer-token check for the admin API, in constant time: both sides are
// hashed with SHA-256 first, so neither the token's length nor the position of
// the first differing byte shows in the timing.
#pragma once
#include <string_view>

namespace pgrelay {

// True when `authorization` (the header's value) is "Bearer <expected>".
// REQUIRES: `expected` is not empty.
bool bearer_matches(std::string_view authorization, std::string_view expected);

}  // namespace pgrelay
