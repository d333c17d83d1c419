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
  std::string id;                   // lease owner name; default host:pid
  int batch_size = 256;             // events claimed per round trip
  int max_in_flight = 1024;         // events being delivered at once
  int64_t lease_ms = 30000;         // how long a claim lasts without a heartbeat
  int64_t poll_interval_ms = 5000;  // safety poll when no notification arrives
  int64_t poll_max_ms = 50;         // wake "poll": longest gap between checks when idle
  std::string wake = "notify";      // notify | poll | wal
  // trigger: capture triggers and emit() write db_events rows in the producer's
  // transaction; wal: they write nothing there, a relay decodes the WAL (a permanent
  // pgoutput slot) and writes the rows (capture/wal_capture.hpp). `run` switches the
  // database to this mode.
  std::string capture = "trigger";
  // lease: claims write a lease (survives long handlers, costs a write per claim);
  // transaction: claims lock rows in a transaction held open while the batch is
  // delivered (one write per event; for fast handlers only, timeout_ms <= 10000).
  std::string claim = "lease";
  int64_t done_retention_s = 0;         // keep finished events this long (0: delete at once)
  int64_t shutdown_timeout_ms = 10000;  // on SIGTERM, wait this long for in-flight deliveries
  int64_t ack_delay_ms = 2;             // gather outcomes this long into one ack round trip
};

// The attempt log (pgrelay.attempt_batches, migration 0008): every delivery attempt,
// written with the acks in the same round trip, one row per acked batch.
struct AttemptLogOptions {
  bool enabled = true;                // false: no rows written (acks as before)
  int response_head_bytes = 256;      // first bytes of a response body or command output kept (0: none)
  int64_t retention_s = 7LL * 86400;  // attempts older than this are deleted in batches by a relay
};

struct LogOptions {
  std::string level = "info";   // debug | info | warn | error
  std::string format = "auto";  // auto (json unless a terminal) | json | text
};

struct CircuitBreakerOptions {
  int failures = 5;             // consecutive failures that open the breaker (0: never)
  int64_t cooldown_ms = 30000;  // how long an open breaker defers events before one probe
};

struct HandlerConfig {
  std::string name;
  std::string type;  // stdout | command | webhook | sql | nats
  RetryPolicy retry;
  int64_t timeout_ms = 30000;  // per delivery; must stay below 4 x the lease
  bool timeout_given = false;  // unset: the default is cut to what the claim mode allows
  int concurrency = 16;        // deliveries of this handler running at once
  // command
  std::vector<std::string> argv;
  // webhook
  std::string url;                                           // http:// or https://
  std::vector<std::pair<std::string, std::string>> headers;  // extra request headers
  std::string secret;  // Standard Webhooks signing secret (from secret or secret_env)
  int64_t connect_timeout_ms = 5000;
  // Keep-alive connections per destination, so at most this many requests are
  // in flight; 0 (default) follows `concurrency`. Below concurrency, the other
  // deliveries queue for a connection (config_warnings() says so).
  int pool_size = 0;
  std::vector<int> dead_statuses = {400, 401, 403, 404, 410, 422};  // answered with these: dead at once
  CircuitBreakerOptions breaker;
  bool tls_verify = true;
  std::string ca_file;  // extra CA bundle for https (PEM)
  // sql: a function f(event jsonb) called in the transaction that records success
  std::string function;
  // nats: JetStream publish
  std::string nats_url = "nats://127.0.0.1:4222";
  std::string subject = "pgrelay.{type}";  // {type} is replaced by the event type
  // webhook, nats: deliver as CloudEvents 1.0 (handlers/cloudevent.hpp)
  std::string cloudevents_mode;    // "" (the event document as is) | binary | structured
  std::string cloudevents_source;  // the CloudEvents source; empty: "/pgrelay/<database name>"
};

// Declared shape of an event type's payload: required fields and their JSON types.
struct EventTypeDecl {
  std::string type;
  std::vector<std::pair<std::string, std::string>> required;  // field -> string|number|integer|boolean|object|array
};

struct AdminOptions {
  std::string listen;                  // host:port for health, metrics, status page and admin API; empty: off
  std::string token;                   // bearer token for admin actions (from token or token_env); empty: actions off
  int64_t ready_max_backlog = 100000;  // /readyz fails above this many due events
  int64_t ready_max_oldest_pending_s = 300;  // /readyz fails when the oldest due event is older
  // Host header values (names, lower case, without port) accepted besides IP
  // literals, "localhost" and the listen host; stops DNS rebinding.
  std::vector<std::string> allowed_hosts;
};

struct Route {
  std::string match;  // exact event type, "prefix.*", or "*"
  std::vector<std::string> handlers;
};

struct Config {
  DatabaseOptions database;
  RelayOptions relay;
  LogOptions log;
  AttemptLogOptions attempts;
  AdminOptions admin;
  std::vector<HandlerConfig> handlers;
  std::vector<Route> routes;
  std::vector<EventTypeDecl> event_types;

  const HandlerConfig* handler(const std::string& name) const;
};

// The connections a webhook handler opens: pool_size when set (never more than
// concurrency, which bounds the requests anyway), else concurrency.
int webhook_pool_size(const HandlerConfig& h);

// Looks up an environment variable; returns nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_env();

// Whether secrets named by `*_env` keys must be set. Only commands that deliver
// events or serve the admin API need them; the others (status, dead, pause...)
// read the same file on a machine that may not hold the relay's secrets.
enum class Secrets { required, optional };

// Parses and validates a config document, then applies environment overrides:
// DATABASE_URL / PGRELAY_DATABASE_URL, PGRELAY_LISTEN_DATABASE_URL, PGRELAY_RELAY_ID,
// PGRELAY_BATCH_SIZE, PGRELAY_MAX_IN_FLIGHT, PGRELAY_LEASE_MS, PGRELAY_POLL_INTERVAL_MS, PGRELAY_POLL_MAX_MS,
// PGRELAY_WAKE, PGRELAY_DONE_RETENTION_S, PGRELAY_LOG_LEVEL, PGRELAY_LOG_FORMAT,
// PGRELAY_ADMIN_LISTEN.
// Throws ConfigError naming the key path (and the variable, for overrides), or
// the line and column of a JSON syntax error. With Secrets::optional, a
// `secret_env`/`token_env` naming an unset variable leaves the secret empty.
Config parse_config(const std::string& json_text, const EnvLookup& env, Secrets secrets = Secrets::required);

// What a config must have to be run (`run`, `reconcile`, and `check-config`,
// which checks exactly what run will refuse): at least one route. Throws ConfigError.
void require_deliverable(const Config& c);

// Valid settings that are probably not what was meant, one sentence each
// (a webhook whose pool_size caps its concurrency). Logged by `run` at start,
// printed by `check-config`.
std::vector<std::string> config_warnings(const Config& c);

// A config with no handlers or routes, for commands that only need the database.
Config default_config(const EnvLookup& env);

}  // namespace pgrelay
