// Opening database connections the way the daemon wants them: keepalives,
// connect timeout and an application_name that names the role of the connection.
#pragma once
#include <memory>
#include <string>

#include <pqxx/connection>

namespace pgrelay {

// Adds libpq parameters to a connection string in either form (URL or key=value).
std::string with_params(const std::string& conninfo, const std::string& params_kv);

// Connects with keepalives and a 5 s connect timeout; `role` becomes the
// application_name ("pgrelay-<role>"). Throws pqxx::broken_connection.
std::unique_ptr<pqxx::connection> connect(const std::string& conninfo, const std::string& role);

}  // namespace pgrelay
