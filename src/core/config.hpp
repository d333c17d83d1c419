// The configuration model: one JSON file plus environment overrides, validated
// up front so that a bad key never reaches a running relay.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/backoff.hpp"

namespace pgrelay {

// Thrown for any invalid configuration; what() names the key path and the problem.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct DatabaseOptions {
  // libpq connection string or URL; empty means libpq's PG* environment defaults.
  std::string url;
  // Connection for LISTEN when `url` goes through a transaction-mode pooler
  // (which cannot carry LISTEN); empty means `url`.
  std::string listen_url;
};

struct RelayOptions {
  std::string id;                     // lease owner name; default host:pid
  int batch_size = 256;               // events claimed per round trip
  int max_in_flight = 1024;           // events being delivered at once
  int64_t lease_ms = 30000;           // how long a claim lasts without a heartbeat
  int64_t poll_interval_ms = 5000;    // safety poll when no notification arrives
  std::string wake = "notify";        // notify | poll | wal
  int64_t done_retention_s = 0;       // keep finished events this long (0: delete at once)
  int64_t shutdown_timeout_ms = 10000;  // on SIGTERM, wait this long for in-flight deliveries
  int64_t ack_delay_ms = 2;           // gather outcomes this long into one ack round trip
};

struct LogOptions {
  std::string level = "info";   // debug | info | warn | error
  std::string format = "auto";  // auto (json unless a terminal) | json | text
};

struct HandlerConfig {
  std::string name;
  std::string type;  // stdout | command
  RetryPolicy retry;
  int64_t timeout_ms = 30000;  // per delivery; must stay below the lease
  int concurrency = 16;        // deliveries of this handler running at once
  // command
  std::vector<std::string> argv;
};

struct Route {
  std::string match;  // exact event type, "prefix.*", or "*"
  std::vector<std::string> handlers;
};

struct Config {
  DatabaseOptions database;
  RelayOptions relay;
  LogOptions log;
  std::vector<HandlerConfig> handlers;
  std::vector<Route> routes;

  const HandlerConfig* handler(const std::string& name) const;
};

// Looks up an environment variable; returns nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_env();

// Parses and validates a config document, then applies environment overrides:
// DATABASE_URL / PGRELAY_DATABASE_URL, PGRELAY_LISTEN_DATABASE_URL, PGRELAY_RELAY_ID,
// PGRELAY_BATCH_SIZE, PGRELAY_MAX_IN_FLIGHT, PGRELAY_LEASE_MS, PGRELAY_POLL_INTERVAL_MS,
// PGRELAY_WAKE, PGRELAY_DONE_RETENTION_S, PGRELAY_LOG_LEVEL, PGRELAY_LOG_FORMAT.
// Throws ConfigError naming the key path (and the variable, for overrides).
Config parse_config(const std::string& json_text, const EnvLookup& env);

// A config with no handlers or routes, for commands that only need the database.
Config default_config(const EnvLookup& env);

}  // namespace pgrelay
