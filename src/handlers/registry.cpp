// Maps a handler's configured type to its implementation.
#include "handlers/registry.hpp"

#include <stdexcept>

#include "handlers/command_handler.hpp"
#include "handlers/nats_handler.hpp"
#include "handlers/sql_handler.hpp"
#include "handlers/stdout_handler.hpp"
#include "handlers/webhook_handler.hpp"

namespace pgrelay {

std::unique_ptr<Handler> make_handler(const HandlerConfig& cfg) {
  if (cfg.type == "stdout") return std::make_unique<StdoutHandler>();
  if (cfg.type == "command") return std::make_unique<CommandHandler>(cfg.argv, cfg.timeout_ms, cfg.concurrency);
  if (cfg.type == "webhook") return std::make_unique<WebhookHandler>(cfg);
  if (cfg.type == "sql") return std::make_unique<SqlHandler>(cfg.function);
  if (cfg.type == "nats") return std::make_unique<NatsHandler>(cfg);
  throw std::logic_error("handler type " + cfg.type + " has no implementation");
}

}  // namespace pgrelay
