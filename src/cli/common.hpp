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

struct Globals {
  std::string config_path;  // --config or PGRELAY_CONFIG
  std::string database;     // --database; wins over the config and DATABASE_URL
  bool json = false;        // --json, for commands whose output is data
};

// The subcommand chosen on the command line sets this.
using Action = std::function<int()>;

// Loads and validates the config (file if given, environment, --database) and
// applies its log settings.
Config load_config(const Globals& g);
std::unique_ptr<pqxx::connection> open_db(const Config& c, const std::string& role);

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
void add_pause(CLI::App& app, Globals& g, Action& action);   // pause and resume
void add_replay(CLI::App& app, Globals& g, Action& action);

}  // namespace pgrelay::cli
