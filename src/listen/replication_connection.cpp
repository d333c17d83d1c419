// Opening the wal waker's replication connection and naming what keeps it from
// streaming (listen/replication_connection.hpp).
#include "listen/replication_connection.hpp"

#include <libpq-fe.h>

#include "store/connection.hpp"

namespace pgrelay {
namespace {

// replication=database makes the connection a walsender bound to the database,
// which logical slots need.
constexpr const char* kParams =
    "replication=database keepalives=1 keepalives_idle=10 keepalives_interval=5 keepalives_count=3 "
    "connect_timeout=5";

}  // namespace

void PgConnDeleter::operator()(pg_conn* c) const { PQfinish(c); }

ReplicationConnection open_replication_connection(const std::string& conninfo, const std::string& application_name) {
  const std::string params = std::string(kParams) + " application_name=" + application_name;
  return ReplicationConnection(PQconnectdb(with_params(conninfo, params).c_str()));
}

std::string one_line(const std::string& s) {
  std::string out;
  bool space = false;
  for (char ch : s) {
    if (ch == '\n' || ch == '\t' || ch == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += ch;
  }
  return out;
}

std::string replication_error(pg_conn* c) { return one_line(c ? PQerrorMessage(c) : "out of memory"); }

std::string show_wal_level(pg_conn* c, std::string* error) {
  PGresult* r = PQexec(c, "SHOW wal_level");
  std::string level;
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
    level = PQgetvalue(r, 0, 0);
  } else {
    *error = "SHOW wal_level failed: " + replication_error(c);
  }
  PQclear(r);
  return level;
}

std::string wal_level_error(const std::string& level) {
  return "wake mode \"wal\" needs wal_level=logical (it is \"" + level +
         "\"); set it in postgresql.conf and restart, or use wake \"poll\"";
}

bool is_replication_denied(const std::string& error) {
  return error.find("replication role") != std::string::npos ||
         error.find("REPLICATION attribute") != std::string::npos ||
         error.find("permission denied to start WAL sender") != std::string::npos;
}

std::string replication_denied_error(const std::string& error) {
  return "wake mode \"wal\" needs a role with the REPLICATION attribute (ALTER ROLE ... REPLICATION), "
         "or use wake \"poll\": " +
         error;
}

}  // namespace pgrelay
