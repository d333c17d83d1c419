// Versioned, checksummed migrations plus repeatable trigger files, applied in
// one transaction under an advisory lock so that replicas starting at once do not race.
#pragma once
#include <stdexcept>
#include <string>
#include <vector>

#include <pqxx/connection>

namespace pgrelay {

struct SqlFile {
  enum class Kind { versioned, repeatable };
  Kind kind;
  const char* name;
  const char* sql;
};

// migrations/*.sql (versioned) then triggers/*.sql (repeatable), in name order;
// compiled into the binary.
const std::vector<SqlFile>& embedded_sql();

// An applied versioned migration whose text no longer matches what was applied.
struct MigrationChecksumError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct MigrateReport {
  std::vector<std::string> applied;   // file names applied by this call
  std::vector<std::string> warnings;  // what the server warned of while applying them
};

// Applies what is pending; idempotent. Throws MigrationChecksumError (nothing applied)
// or pqxx errors (the transaction rolls back).
MigrateReport migrate(pqxx::connection& conn, const std::vector<SqlFile>& files = embedded_sql());

// The whole migration as one SQL script, for teams that run their own tool.
std::string migration_script(const std::vector<SqlFile>& files = embedded_sql());

}  // namespace pgrelay
