// The event types of the fault runs and the handlers each is routed to: fault_run
// writes the relays' routes from this table, the producer picks each event's type
// from it, and the checker expects every routed handler to have succeeded for
// every committed event and for every event that ends done.
#pragma once
#include <cstdint>
#include <string>

namespace pgrelay::faults {

struct RoutedType {
  const char* type;
  bool webhook;  // "hook": the recording receiver, through a proxy (at least once)
  bool sql;      // "ledger": fault.record() in the ack transaction (exactly once)
  bool command;  // "flaky": a program that fails the first attempt of half its events
};

// Captured rows stay webhook-only, as the suite began; emit()'s events add the
// mixed routes: a webhook beside an sql handler, all three kinds on one type,
// and an sql handler alone (whose effect is the event's only trace).
inline constexpr RoutedType kRoutedTypes[] = {
    {"fault_items.insert", true, false, false},
    {"fault.emit", true, true, false},
    {"fault.mixed", true, true, true},
    {"fault.ledger", false, true, false},
};

// The routing of the event that carries `seq`: odd numbers are rows inserted into
// the tracked table, even ones go through pgrelay.emit() with a type by seq % 8.
inline const RoutedType& routing_of(int64_t seq) {
  if (seq % 2 != 0) return kRoutedTypes[0];
  switch (seq % 8) {
    case 0: return kRoutedTypes[2];
    case 2: return kRoutedTypes[3];
    default: return kRoutedTypes[1];
  }
}

}  // namespace pgrelay::faults
