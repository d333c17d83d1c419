// libFuzzer target: Retry-After parsing (src/handlers/retry_after). Any value
// gives a delay within [0, one year] or nullopt.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "handlers/retry_after.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view value(reinterpret_cast<const char*>(data), size);
  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1763856000));  // 2025-11-23
  const auto d = pgrelay::parse_retry_after(value, now);
  if (d && (d->count() < 0 || *d > std::chrono::hours(24 * 366))) std::abort();
  return 0;
}
