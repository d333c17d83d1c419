// What the fault runs' sql and command handlers leave behind, outside the
// webhook receiver: the sql handler's ledger (a row per call, written in the
// relay's ack transaction) and the command handler's run log (a line per run).
// The checker reads both to tell whether each handler really succeeded, and
// whether an sql effect happened more than once.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace pgrelay::faults {

// The sql handler's function, as a relay's config names it.
inline constexpr const char* kLedgerFunction = "fault.record";

// Creates schema `fault` with the ledger table and fault.record(event jsonb).
void prepare_ledger(const std::string& url);

// The command handler: a shell that logs "<event id> <attempt> <exit code>
// <relay> <µs since the epoch>" to `log_path` as it ends, and fails the first
// attempt of every event with an even id, as a flaky consumer would. As a
// config's "command" array.
std::vector<std::string> flaky_command(const std::string& log_path, const std::string& relay);

struct CommandRun {
  int64_t event_id = 0;
  int attempt = 0;
  int exit_code = -1;
  std::string relay;
  int64_t ended_us = 0;  // when it logged its line, just before exiting
};

// Every run the command logged (an absent file is no runs).
std::vector<CommandRun> read_command_runs(const std::string& log_path);

}  // namespace pgrelay::faults
