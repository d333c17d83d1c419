// `stdout` handler: writes each event as one JSON line to standard output.
#pragma once
#include "handlers/handler.hpp"

namespace pgrelay {

class StdoutHandler : public Handler {
 public:
  void deliver(std::shared_ptr<const Event> event, Done done) override;
};

}  // namespace pgrelay
