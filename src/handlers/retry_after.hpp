// Parsing of the HTTP Retry-After header (RFC 9110 §10.2.3): a number of
// seconds or an HTTP-date. Pure functions; no I/O.
#pragma once
#include <chrono>
#include <optional>
#include <string_view>

namespace pgrelay {

// The delay a Retry-After value asks for, measured from `now`:
//   "120"                           -> 120 s
//   "Sun, 06 Nov 1994 08:49:37 GMT" -> that instant minus `now` (IMF-fixdate;
//                                      the obsolete RFC 850 and asctime forms too)
// A date in the past gives 0. Returns nullopt for anything else (empty, negative,
// fractional, garbage), so a broken header falls back to the retry policy.
// Absurdly large values are clamped to one year (the policy's cap applies later).
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value,
                                                           std::chrono::system_clock::time_point now);

}  // namespace pgrelay
