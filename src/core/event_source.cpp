// Delivery ids: the database's prefix and the event id.
#include "core/event_source.hpp"

namespace pgrelay {

std::string delivery_id(const EventSource& source, int64_t event_id) {
  if (source.id_prefix.empty()) return std::to_string(event_id);
  return source.id_prefix + "-" + std::to_string(event_id);
}

bool valid_id_prefix(const std::string& prefix) {
  if (prefix.empty() || prefix.size() > 64) return false;
  for (unsigned char c : prefix) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace pgrelay
