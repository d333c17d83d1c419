// The wal waker's replication connection over raw libpq (libpqxx 6.4 cannot speak
// the streaming replication protocol): opening one, and telling a user what
// keeps the server from streaming (wal_level, the REPLICATION attribute) in
// words that say what to do. Functions of one connection; no shared state.
#pragma once
#include <memory>
#include <string>

struct pg_conn;  // libpq's PGconn

namespace pgrelay {

struct PgConnDeleter {
  void operator()(pg_conn* c) const;  // PQfinish
};
using ReplicationConnection = std::unique_ptr<pg_conn, PgConnDeleter>;

// A walsender connection bound to the database `conninfo` names (logical slots
// are per database), with keepalives and a 5 s connect timeout. Blocking. Never
// null unless out of memory; check PQstatus.
// `application_name` tells the wal waker's connections from wal capture's in pg_stat_replication.
ReplicationConnection open_replication_connection(const std::string& conninfo,
                                                  const std::string& application_name = "pgrelay-wal-waker");

// The connection's last error on one log-friendly line ("out of memory" for null).
std::string replication_error(pg_conn* c);
// libpq's multi-line messages as one line.
std::string one_line(const std::string& s);

// SHOW wal_level on a connected connection; "" with `error` set if it failed.
std::string show_wal_level(pg_conn* c, std::string* error);
// What to do when wal_level is `level`, not logical.
std::string wal_level_error(const std::string& level);

// Whether a connection error says the role may not start a walsender (the
// wording changed across server versions), and what to do about it.
bool is_replication_denied(const std::string& error);
std::string replication_denied_error(const std::string& error);

}  // namespace pgrelay
