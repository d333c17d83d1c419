// `pgrelay check-config`: validate a config file without touching the database.
#include <iostream>

#include "cli/common.hpp"
#include "handlers/registry.hpp"

namespace pgrelay::cli {

void add_check_config(CLI::App& app, Globals& g, Action& action) {
  auto* cmd = app.add_subcommand("check-config",
                                 "Validate the config (and environment overrides) exactly as `run` does, and print\n"
                                 "a summary and any warnings; exit 2 with the key path and the problem when `run`\n"
                                 "would refuse it. Does not connect.");
  cmd->callback([&g, &action] {
    action = [&g] {
      Config c = load_config(g, Secrets::required);
      require_deliverable(c);
      // Built and dropped: what a handler refuses when the relay builds it (a
      // URL it cannot use, an unreadable ca_file) is refused here the same way.
      for (const HandlerConfig& h : c.handlers) make_handler(h);
      std::cout << "config ok: " << c.handlers.size() << " handlers, " << c.routes.size() << " routes, wake "
                << c.relay.wake << "\n";
      for (const auto& r : c.routes) {
        std::cout << "  " << r.match << " ->";
        for (const auto& h : r.handlers) std::cout << " " << h << " (" << c.handler(h)->type << ")";
        std::cout << "\n";
      }
      for (const std::string& w : config_warnings(c)) std::cout << "warning: " << w << "\n";
      return kOk;
    };
  });
}

}  // namespace pgrelay::cli
