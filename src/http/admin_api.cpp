// Routing, readiness and the background threads of the admin API (the reports it
// renders: admin_reports.cpp; the actions: admin_actions.cpp).
#include "http/admin_api.hpp"

#include <rapidjson/document.h>

#include <pqxx/pqxx>

#include "core/log.hpp"
#include "http/bearer_auth.hpp"
#include "http/console_page.hpp"
#include "http/status_page.hpp"
#include "store/admin_queries.hpp"
#include "store/connection.hpp"

namespace pgrelay {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kRetryWhenDown = std::chrono::milliseconds(500);
constexpr size_t kMaxQueuedActions = 16;

constexpr auto kRefusalLogEvery = std::chrono::seconds(10);
constexpr size_t kHostShownBytes = 100;

AdminResponse text(int status, std::string body) { return AdminResponse::text(status, std::move(body)); }
AdminResponse json_error(int status, const std::string& message) { return AdminResponse::json_error(status, message); }

std::string path_of(const std::string& target) { return target.substr(0, target.find('?')); }

// Probes answer whatever name they use: they read nothing a rebinding page wants,
// and a liveness probe refused for its Host would restart a healthy relay.
bool host_exempt(const std::string& path) { return path == "/healthz" || path == "/readyz"; }

}  // namespace

AdminResponse AdminResponse::text(int status, std::string body) {
  AdminResponse r;
  r.status = status;
  r.body = std::move(body);
  if (r.body.empty() || r.body.back() != '\n') r.body += '\n';
  return r;
}

AdminResponse AdminResponse::json(int status, std::string body) {
  AdminResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(body);
  r.body += '\n';
  return r;
}

AdminResponse AdminResponse::json_error(int status, const std::string& message) {
  return json(status, "{\"error\":" + log::json_quoted(message) + "}");
}

AdminApi::AdminApi(const AdminServerOptions& options, const Metrics* metrics, RelayProbe probe)
    : options_(options),
      metrics_(metrics),
      probe_(std::move(probe)),
      hosts_(options.listen.substr(0, options.listen.rfind(':')), options.allowed_hosts),
      unauthorized_log_(kRefusalLogEvery),
      foreign_host_log_(kRefusalLogEvery) {
  sampler_ = std::thread([this] { sample_loop(); });
  worker_ = std::thread([this] { action_loop(); });
}

AdminApi::~AdminApi() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  sampler_.join();
  worker_.join();
}

void AdminApi::sample_loop() {
  std::unique_ptr<pqxx::connection> conn;
  for (;;) {
    Sample s;
    try {
      if (!conn) conn = connect(options_.database_url, "admin");  // read_sample() bounds its own time
      s.data = read_sample(*conn);
      s.ok = true;
    } catch (const std::exception& e) {
      s.error = e.what();
      while (!s.error.empty() && (s.error.back() == '\n' || s.error.back() == ' ')) s.error.pop_back();
      conn.reset();
    }
    s.at = Clock::now();
    const bool ok = s.ok;
    std::unique_lock<std::mutex> lock(mutex_);
    if (ok != sample_.ok || sample_.at == Clock::time_point{}) {
      if (ok) log::info("admin: database answers");
      else log::warn("admin: database does not answer", {{"error", s.error}});
    }
    record_history(s);
    sample_ = std::move(s);
    const auto wait = ok ? std::chrono::milliseconds(options_.sample_interval_ms) : kRetryWhenDown;
    if (cv_.wait_for(lock, wait, [this] { return stop_; })) return;
  }
}

void AdminApi::action_loop() {
  for (;;) {
    std::pair<AdminRequest, std::function<void(AdminResponse)>> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return stop_ || !actions_.empty(); });
      if (stop_) break;
      job = std::move(actions_.front());
      actions_.erase(actions_.begin());
    }
    job.second(run_action(job.first));
  }
  // Answer what is left so no client hangs on shutdown.
  std::vector<std::pair<AdminRequest, std::function<void(AdminResponse)>>> left;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    left.swap(actions_);
  }
  for (auto& job : left) job.second(json_error(503, "shutting down"));
}

AdminApi::Sample AdminApi::sample() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return sample_;
}

AdminApi::Readiness AdminApi::readiness() const {
  const Sample s = sample();
  const auto stale_after = std::chrono::milliseconds(3 * options_.sample_interval_ms + 5000);
  if (s.at == Clock::time_point{}) return {false, "database: not sampled yet"};
  if (!s.ok) return {false, "database does not answer: " + s.error};
  if (Clock::now() - s.at > stale_after)
    return {false, "database: no answer for over " + std::to_string(stale_after.count() / 1000) + " s"};
  if (options_.expect_listener && probe_.listener_alive && !probe_.listener_alive()) {
    return {false, "LISTEN connection is down (wake=notify); reconnecting"};
  }
  if (s.data.backlog > options_.ready_max_backlog) {
    return {false, "backlog " + std::to_string(s.data.backlog) + " due events > admin.ready_max_backlog " +
                       std::to_string(options_.ready_max_backlog) + " (not counting " +
                       std::to_string(s.data.paused_backlog) + " paused and " + std::to_string(s.data.unrouted) +
                       " unrouted)"};
  }
  if (s.data.oldest_due_wait_s &&
      *s.data.oldest_due_wait_s > static_cast<double>(options_.ready_max_oldest_pending_s)) {
    return {false, "oldest due event has waited " + log::fixed3(*s.data.oldest_due_wait_s) +
                       " s > admin.ready_max_oldest_pending_s " + std::to_string(options_.ready_max_oldest_pending_s)};
  }
  return {true, "ready"};
}

void AdminApi::handle(AdminRequest req, std::function<void(AdminResponse)> reply) {
  const std::string path = path_of(req.target);
  const bool get = req.method == "GET" || req.method == "HEAD";
  auto only = [&](const char* allowed) {
    AdminResponse r = text(405, "method not allowed");
    r.allow = allowed;
    reply(std::move(r));
  };
  if (!host_exempt(path) && !hosts_.allows(req.host)) {
    const std::string shown = req.host.substr(0, kHostShownBytes);
    if (const int64_t n = foreign_host_log_.admit()) {
      log::warn("admin: refused requests for a Host that is not this server (DNS rebinding?)",
                {{"host", shown}, {"path", path.substr(0, kHostShownBytes)}, {"count", n}});
    }
    return reply(text(403, "Host \"" + shown +
                               "\" is not this server: use its IP address or localhost, or add the name to "
                               "admin.allowed_hosts (a check against DNS rebinding)"));
  }
  if (path == "/healthz") return get ? reply(text(200, "ok")) : only("GET, HEAD");
  if (path == "/readyz") {
    if (!get) return only("GET, HEAD");
    const Readiness r = readiness();
    return reply(text(r.ready ? 200 : 503, r.reason));
  }
  if (path == "/metrics") return get ? reply(metrics_text()) : only("GET, HEAD");
  if (path == "/status.json") return get ? reply(status_json()) : only("GET, HEAD");
  if (path == "/" || path == "/index.html" || path == "/status") {
    if (!get) return only("GET, HEAD");
    AdminResponse r;
    r.content_type = "text/html; charset=utf-8";
    r.body = path == "/status" ? status_page_html() : console_page_html();
    return reply(std::move(r));
  }
  if (path.rfind("/admin/", 0) == 0) {
    if (options_.token.empty()) {
      return reply(json_error(404, "admin actions are disabled: set admin.token or admin.token_env"));
    }
    if (!bearer_matches(req.authorization, options_.token)) {
      if (const int64_t n = unauthorized_log_.admit()) {
        log::warn("admin: refused requests without a valid bearer token",
                  {{"path", path.substr(0, kHostShownBytes)}, {"count", n}});
      }
      AdminResponse r = json_error(401, "a valid \"Authorization: Bearer <admin token>\" header is required");
      return reply(std::move(r));
    }
    // The console's reads: from memory at once, or from the database on the worker.
    const bool read = path.rfind("/admin/api/", 0) == 0;
    if (read && !get) return only("GET, HEAD");
    if (path == "/admin/api/overview") return reply(console_overview());
    if (path == "/admin/api/history") return reply(console_history());
    if (!read && req.method != "POST") return only("POST");
    std::lock_guard<std::mutex> lock(mutex_);
    if (actions_.size() >= kMaxQueuedActions) return reply(json_error(503, "too many admin actions queued"));
    actions_.emplace_back(std::move(req), std::move(reply));
    cv_.notify_all();
    return;
  }
  reply(text(404, "not found"));
}

}  // namespace pgrelay
