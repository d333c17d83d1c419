// The options that name events, shared by `dead list|retry|purge` and `events list`:
// --id, --type, --key, --older-than-s, --error.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "store/admin_queries.hpp"

namespace pgrelay::cli {

struct FilterArgs {
  std::vector<int64_t> ids;
  std::string type, key, error;
  int64_t older_than_s = -1;
  int limit = 100;
  bool all = false, yes = false, json = false;

  // A filter that PostgreSQL text cannot hold would be cut short and match more.
  DeadFilter filter() const;
  bool narrowed() const { return !ids.empty() || !type.empty() || !key.empty() || !error.empty() || older_than_s >= 0; }
};

// Adds the filter options to `cmd`; `older_than` says what the age is measured from.
void add_filters(CLI::App* cmd, FilterArgs& a, const std::string& older_than = "Dead for at least this many seconds");

// Checks an event id given as text: CLI11 would turn 99999999999999999999 into INT64_MAX silently.
const CLI::Validator& event_id_validator();

}  // namespace pgrelay::cli
