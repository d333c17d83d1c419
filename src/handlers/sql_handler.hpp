// `sql` handler: calls a function f(event jsonb) in the database, inside the
// transaction that records the event's outcome, so its effect happens exactly
// once (docs/design.md, the contract, point 4). The relay runs it at ack time through Queue::ack_with_sql; deliver() is
// never the path for it.
#pragma once
#include <string>

#include "handlers/handler.hpp"

namespace pgrelay {

class SqlHandler : public Handler {
 public:
  explicit SqlHandler(std::string function) : function_(std::move(function)) {}
  void deliver(std::shared_ptr<const Event>, Done done) override {
    done(Outcome::retry("sql handler called outside the ack transaction"));
  }
  const std::string* sql_function() const override { return &function_; }

 private:
  std::string function_;
};

}  // namespace pgrelay
