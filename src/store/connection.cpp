// Connection set-up shared by the claimer, the listener and the CLI.
#include "store/connection.hpp"

#include <sstream>

#include <pqxx/nontransaction>

namespace pgrelay {

std::string with_params(const std::string& conninfo, const std::string& params_kv) {
  const bool is_url = conninfo.rfind("postgresql://", 0) == 0 || conninfo.rfind("postgres://", 0) == 0;
  if (!is_url) return conninfo.empty() ? params_kv : conninfo + " " + params_kv;
  std::string out = conninfo;
  char sep = conninfo.find('?') == std::string::npos ? '?' : '&';
  std::istringstream in(params_kv);
  std::string kv;
  while (in >> kv) {
    out += sep;
    out += kv;
    sep = '&';
  }
  return out;
}

std::unique_ptr<pqxx::connection> connect(const std::string& conninfo, const std::string& role) {
  const std::string params =
      "keepalives=1 keepalives_idle=10 keepalives_interval=5 keepalives_count=3 connect_timeout=5 "
      "application_name=pgrelay-" +
      role;
  // No session settings here: behind a pooler in transaction mode a SET reaches one
  // server connection and then leaks to other clients. What needs jit off (compiling
  // a claim once took five times the claim) sets it per call: the queue functions
  // carry SET jit = off (triggers/40_queue.sql), the admin sample a SET LOCAL.
  return std::make_unique<pqxx::connection>(with_params(conninfo, params));
}

}  // namespace pgrelay
