// The interface every handler kind implements. A handler receives one event at a
// time per call and reports exactly one Outcome through `done`.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "core/event.hpp"
#include "core/event_source.hpp"
#include "core/outcome.hpp"

namespace pgrelay {

class Handler {
 public:
  using Done = std::function<void(Outcome)>;
  virtual ~Handler() = default;

  // Starts one delivery. Must not block for long: slow work belongs on the
  // handler's own threads or sockets. Calls `done` exactly once, from any thread;
  // the relay ignores a call that comes after the handler's timeout.
  virtual void deliver(std::shared_ptr<const Event> event, Done done) = 0;

  // Called once by the relay, after it connected and before the first delivery:
  // the database the events come from, which delivery ids and CloudEvents sources
  // name. A handler never told uses bare event ids.
  virtual void set_source(const EventSource& source) { (void)source; }

  // Called once at shutdown: abandon work in progress (kill children, close sockets).
  virtual void shutdown() {}

  // For `sql` handlers only: the function the relay calls inside the transaction
  // that records the outcome, instead of calling deliver().
  virtual const std::string* sql_function() const { return nullptr; }
};

}  // namespace pgrelay
