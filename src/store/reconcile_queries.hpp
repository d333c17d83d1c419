// What a reconcile run reports at its end, beyond the status counts: the problems
// grouped for the summary, and how much is still due.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <pqxx/connection>

namespace pgrelay {

// Dead events, and failing ones (a retry scheduled after a failure), by type and
// the handler named in their last error.
struct ProblemGroup {
  std::string status;  // "dead" or "failing"
  std::string type, handler, last_error;
  int64_t count = 0;
};
std::vector<ProblemGroup> problem_groups(pqxx::connection& conn);

// Events a relay could take now: pending and due, or processing with their lease run out.
int64_t due_now(pqxx::connection& conn);

}  // namespace pgrelay
