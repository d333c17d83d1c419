// The admin HTTP server: /healthz, /readyz, /metrics, the status page (/ and
// /status.json) and the token-protected admin API (/admin/...). It runs its
// own io_context thread; database work (sampling gauges, admin actions) runs
// on two more threads with their own connections, so a slow or absent
// database never stalls /healthz. Hostile clients are bounded: headers
// <= 8 KiB, bodies <= 64 KiB, a whole request must arrive within
// read_timeout_ms (slowloris), a whole answer must be taken within
// write_timeout_ms, and at most max_connections are open at once: at the cap
// a new connection evicts the client stuck longest not reading its answers,
// else the one waiting longest to finish a request, so /healthz stays
// answerable. A request whose body framing is ambiguous (RFC 9112 §6.1) gets
// 400 and the connection closes. Host must name this server (host_allow_list.hpp).
//
// Owned by the relay (or a test); start() and stop() from one thread.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace pgrelay {

class Metrics;

struct AdminServerOptions {
  std::string listen;        // "host:port"; port 0 picks a free one (see port())
  std::string token;         // bearer token for /admin/*; empty: admin actions answer 404
  std::string database_url;  // for gauges and admin actions
  int64_t ready_max_backlog = 100000;
  int64_t ready_max_oldest_pending_s = 300;
  bool expect_listener = false;            // wake=notify: /readyz also needs LISTEN alive
  int max_connections = 64;                // further connections are closed at once
  int64_t read_timeout_ms = 10000;         // a request (or a keep-alive idle period) must complete within this
  int64_t write_timeout_ms = 5000;         // an answer must be written (taken by the client) within this
  std::vector<std::string> allowed_hosts;  // Host names accepted besides IP literals, localhost and the listen host
  size_t header_limit_bytes = 8 * 1024;
  size_t body_limit_bytes = 64 * 1024;
  int64_t sample_interval_ms = 2000;  // gauges are read from the database this often, not per scrape
  std::vector<std::string> handlers;  // configured handler names, shown even before their first delivery
};

// Live state of the relay the server reports on; every function is called from
// the server's thread and must be thread-safe. Any of them may be empty.
struct RelayProbe {
  std::string relay_id;
  std::string wake;
  std::function<bool()> listener_alive;
  std::function<double()> last_notification_age_s;  // < 0: none yet
  // Events whose outcome this relay recorded: delivered, retried, dead, released.
  std::function<std::array<int64_t, 4>()> event_totals;
};

class AdminServer {
 public:
  // REQUIRES: `metrics` outlives the server (may be null in tests).
  AdminServer(AdminServerOptions options, const Metrics* metrics, RelayProbe probe);
  ~AdminServer();  // stops
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds and starts serving. Throws std::runtime_error naming the address when
  // it cannot listen.
  void start();
  void stop();
  // The bound port (useful with port 0); 0 before start().
  uint16_t port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "host:port" split; throws std::invalid_argument with a readable message.
std::pair<std::string, uint16_t> parse_listen_address(const std::string& listen);

}  // namespace pgrelay
