// `pgrelay check-config`: validate a config file without touching the database.
#include <iostream>

#include "cli/common.hpp"

namespace pgrelay::cli {

void add_check_config(CLI::App& app, Globals& g, Action& action) {
  auto* cmd = app.add_subcommand("check-config",
                                 "Validate the config (and environment overrides) and print a summary; exit 2 with\n"
                                 "the key path and the problem when it is invalid. Does not connect.");
  cmd->callback([&g, &action] {
    action = [&g] {
      Config c = load_config(g);
      std::cout << "config ok: " << c.handlers.size() << " handlers, " << c.routes.size() << " routes, wake "
                << c.relay.wake << "\n";
      for (const auto& r : c.routes) {
        std::cout << "  " << r.match << " ->";
        for (const auto& h : r.handlers) std::cout << " " << h << " (" << c.handler(h)->type << ")";
        std::cout << "\n";
      }
      return kOk;
    };
  });
}

}  // namespace pgrelay::cli
