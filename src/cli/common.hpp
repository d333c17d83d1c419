// What every subcommand shares: global options, config loading, exit codes and
// turning exceptions into messages a user can act on.
#pragma once
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include <CLI/CLI.hpp>
#include <pqxx/connection>

#include "core/config.hpp"

namespace pgrelay::cli {

// 4: a run stopped at its time limit with due work left (reconcile).
enum Exit { kOk = 0, kFailure = 1, kUsage = 2, kProblems = 3, kTimeLimit = 4 };

// A user error detected by the CLI itself (exit 2).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The database has no pgrelay schema yet (exit 2, the same for every command).
struct NotMigrated : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Globals {
  std::string config_path;  // --config or PGRELAY_CONFIG
  std::string database;     // --database; wins over the config and DATABASE_URL
  bool json = false;        // --json, for commands whose output is data
};

// Adds -c/--config and -d/--database to `app` and to every subcommand below
// it, so they are accepted before or after the subcommand and listed in each
// subcommand's --help. Call after every subcommand is registered.
void add_global_options(CLI::App& app, Globals& g);

// `text` with the password of any connection string in it replaced by "***"
// (postgresql://user:PASS@host, password=PASS): for every message the CLI prints.
std::string mask_passwords(const std::string& text);

// Throws UsageError("<option> contains a NUL byte ...") when `value` cannot
// travel as PostgreSQL text (see text_problem()).
void require_text(const std::string& value, const std::string& option);

// The subcommand chosen on the command line sets this.
using Action = std::function<int()>;

// Loads and validates the config (file if given, environment, --database) and
// applies its log settings. Secrets::required for the commands that deliver or
// serve (run, reconcile, check-config); the others do not need the secrets.
Config load_config(const Globals& g, Secrets secrets = Secrets::optional);
// Connects and checks that the database is migrated (throws NotMigrated).
std::unique_ptr<pqxx::connection> open_db(const Config& c, const std::string& role);
// Connects without that check: for `migrate` itself.
std::unique_ptr<pqxx::connection> open_db_unchecked(const Config& c, const std::string& role);

// Runs `action`, mapping exceptions to messages and exit codes.
int guarded(const char* command, const Action& action);

std::vector<std::string> split_csv(const std::string& s);

// Subcommand registration, one per file.
void add_migrate(CLI::App& app, Globals& g, Action& action);
void add_run(CLI::App& app, Globals& g, Action& action);
void add_reconcile(CLI::App& app, Globals& g, Action& action);
void add_status(CLI::App& app, Globals& g, Action& action);
void add_emit(CLI::App& app, Globals& g, Action& action);
void add_track(CLI::App& app, Globals& g, Action& action);
void add_dead(CLI::App& app, Globals& g, Action& action);
void add_check_config(CLI::App& app, Globals& g, Action& action);
void add_pause(CLI::App& app, Globals& g, Action& action);  // pause and resume
void add_replay(CLI::App& app, Globals& g, Action& action);
void add_events(CLI::App& app, Globals& g, Action& action);  // events show and list
void add_wait(CLI::App& app, Globals& g, Action& action);

}  // namespace pgrelay::cli
