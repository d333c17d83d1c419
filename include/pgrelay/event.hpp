// One event as a handler receives it. Cheap to copy (it shares the relay's own
// copy of the event, never re-encodes it); keep a copy to finish a delivery on
// another thread. Immutable, so copies may be read from any thread.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "pgrelay/export.hpp"

namespace pgrelay::api {

class PGRELAY_API Event {
 public:
  // Stable across retries and relays: the idempotency key for receivers.
  int64_t id() const;
  const std::string& type() const;
  // Events of one key are delivered in commit order, one at a time (docs/design.md).
  const std::optional<std::string>& key() const;
  // The whole event as a JSON object:
  // {"id","type","key","payload","headers","created_at","attempt"}.
  const std::string& json() const;
  // 1 for the first delivery.
  int attempt() const;
  // The W3C trace context of the transaction that wrote the event (SET LOCAL
  // pgrelay.traceparent, or emit()'s headers); empty strings when it has none.
  // Parsed from json() on each call.
  std::string traceparent() const;
  std::string tracestate() const;

 private:
  friend struct EventAccess;  // the library's side, which makes events
  explicit Event(std::shared_ptr<const void> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const void> impl_;
};

}  // namespace pgrelay::api
