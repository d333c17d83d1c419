// pgrelay's command line: wires the subcommands and returns their exit code.
#include <signal.h>

#include <iostream>

#include "cli/common.hpp"

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  using namespace pgrelay::cli;
  CLI::App app{
      "pgrelay: a reliable event relay on a PostgreSQL outbox.\n"
      "Events written to pgrelay.db_events (pgrelay.emit() or capture triggers) are claimed and\n"
      "delivered to handlers at least once, in order per key, with retries and dead letters.\n\n"
      "Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config (or a database not migrated yet),\n"
      "3 reconcile found dead or stuck events (wait: an event is dead), 4 a time limit came first.\n"
      "-c and -d go before or after the subcommand."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "pgrelay " PGRELAY_VERSION);
  Globals g;
  Action action;
  add_migrate(app, g, action);
  add_run(app, g, action);
  add_reconcile(app, g, action);
  add_status(app, g, action);
  add_emit(app, g, action);
  add_track(app, g, action);
  add_dead(app, g, action);
  add_check_config(app, g, action);
  add_pause(app, g, action);
  add_replay(app, g, action);
  add_events(app, g, action);
  add_wait(app, g, action);
  add_global_options(app, g);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // CLI11 quotes the arguments it did not expect, which may be a connection string.
    std::cerr << mask_passwords(CLI::FailureMessage::simple(&app, e));
    return kUsage;
  }
  const std::string name = app.get_subcommands().empty() ? "" : app.get_subcommands().front()->get_name();
  return guarded(name.c_str(), action);
}
