// What the admin server answers, independent of the socket layer: routing,
// readiness, metrics text, status JSON and the admin actions. GET requests are
// answered from memory (the database gauges are sampled in the background);
// admin actions run on a worker thread with their own connection and reply
// through the callback. Thread-safe.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <pqxx/connection>

#include "core/log.hpp"
#include "core/metrics.hpp"
#include "http/admin_server.hpp"
#include "http/host_allow_list.hpp"
#include "store/ops_queries.hpp"

namespace pgrelay {

struct AdminRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query
  std::string authorization;
  std::string host;  // the Host header, "" when absent
  std::string body;
};

struct AdminResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::string allow;  // for 405

  static AdminResponse text(int status, std::string body);  // a newline is added if missing
  static AdminResponse json(int status, std::string body);
  static AdminResponse json_error(int status, const std::string& message);  // {"error": message}
};

class AdminApi {
 public:
  AdminApi(const AdminServerOptions& options, const Metrics* metrics, RelayProbe probe);
  ~AdminApi();  // stops the sampler and the worker

  // Answers `req`: at once for reads, from the worker thread for actions.
  void handle(AdminRequest req, std::function<void(AdminResponse)> reply);

  struct Readiness {
    bool ready = false;
    std::string reason;  // why not (or "ready")
  };
  Readiness readiness() const;

 private:
  struct Sample {
    bool ok = false;
    std::string error;
    std::chrono::steady_clock::time_point at{};
    DbSample data;
  };
  // One point of the console's charts, taken with every database sample and kept in
  // memory for an hour (console_api.cpp).
  struct HistoryPoint {
    int64_t at_ms = 0;                        // wall clock, ms since the epoch
    int64_t delivered = 0, failed = 0;        // this relay's event totals (failed: retried + dead)
    std::optional<int64_t> backlog;           // nullopt: the sample failed
    std::optional<double> oldest_due_wait_s;  // nullopt: nothing due, or the sample failed
    std::vector<Metrics::HandlerTotals> handlers;
  };
  void sample_loop();
  void action_loop();
  void record_history(const Sample& s);  // REQUIRES: mutex_ held
  // Events this relay finished per second between the last two history points (0
  // before there are two): the status page's figure, one sample interval wide.
  double recent_throughput_per_s() const;  // REQUIRES: mutex_ held
  // GET /admin/api/overview and /admin/api/history, from memory (console_api.cpp).
  AdminResponse console_overview() const;
  AdminResponse console_history() const;
  // GET /admin/api/dead, /admin/api/event, /admin/api/events: database reads on the worker.
  AdminResponse run_read(const AdminRequest& req);
  AdminResponse metrics_text() const;
  AdminResponse status_json() const;
  AdminResponse run_action(const AdminRequest& req);
  Sample sample() const;

  const AdminServerOptions options_;
  const Metrics* metrics_;
  const RelayProbe probe_;
  const HostAllowList hosts_;
  // Refused requests are logged once per interval with a count, not one line each.
  log::Throttle unauthorized_log_;
  log::Throttle foreign_host_log_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  Sample sample_;
  std::deque<HistoryPoint> history_;
  std::vector<std::pair<AdminRequest, std::function<void(AdminResponse)>>> actions_;
  std::unique_ptr<pqxx::connection> action_conn_;  // worker thread only
  std::thread sampler_;
  std::thread worker_;
};

}  // namespace pgrelay
