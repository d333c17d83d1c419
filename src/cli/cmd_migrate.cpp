// `pgrelay migrate`: apply pending migrations, or print them.
#include <iostream>

#include "cli/common.hpp"
#include "store/migrate.hpp"

namespace pgrelay::cli {

void add_migrate(CLI::App& app, Globals& g, Action& action) {
  auto* cmd = app.add_subcommand("migrate",
                                 "Apply pending migrations (schema pgrelay, tables, emit/track functions) in one\n"
                                 "transaction under an advisory lock; safe to run from several replicas at once.\n"
                                 "Refuses to run if an applied migration file was changed.");
  auto print = std::make_shared<bool>(false);
  cmd->add_flag("--print", *print, "Write the SQL for a fresh database to stdout instead of applying it");
  cmd->callback([&g, &action, print] {
    action = [&g, print] {
      if (*print) {
        std::cout << migration_script();
        return kOk;
      }
      Config c = load_config(g);
      auto conn = open_db_unchecked(c, "migrate");
      MigrateReport r = migrate(*conn);
      if (r.applied.empty()) std::cout << "migrate: up to date\n";
      for (const auto& name : r.applied) std::cout << "migrate: applied " << name << "\n";
      for (const auto& w : r.warnings) std::cerr << "pgrelay migrate: " << w << "\n";
      return kOk;
    };
  });
}

}  // namespace pgrelay::cli
