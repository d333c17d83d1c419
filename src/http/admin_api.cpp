// Routing and answers of the admin server; database work on background threads.
#include "http/admin_api.hpp"

#include <rapidjson/document.h>

#include <cmath>
#include <cstdio>
#include <pqxx/pqxx>

#include "core/breaker_board.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "http/bearer_auth.hpp"
#include "http/status_page.hpp"
#include "store/admin_queries.hpp"
#include "store/connection.hpp"

namespace pgrelay {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kRetryWhenDown = std::chrono::milliseconds(500);
constexpr size_t kMaxQueuedActions = 16;

std::string fixed3(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

std::string opt_number(const std::optional<double>& v) { return v ? fixed3(*v) : "null"; }

constexpr auto kRefusalLogEvery = std::chrono::seconds(10);
constexpr size_t kHostShownBytes = 100;

AdminResponse text(int status, std::string body) { return AdminResponse::text(status, std::move(body)); }
AdminResponse json(int status, std::string body) { return AdminResponse::json(status, std::move(body)); }
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
  if (Clock::now() - s.at > stale_after) return {false, "database: no answer for over " + std::to_string(stale_after.count() / 1000) + " s"};
  if (options_.expect_listener && probe_.listener_alive && !probe_.listener_alive()) {
    return {false, "LISTEN connection is down (wake=notify); reconnecting"};
  }
  if (s.data.backlog > options_.ready_max_backlog) {
    return {false, "backlog " + std::to_string(s.data.backlog) + " due events > admin.ready_max_backlog " +
                       std::to_string(options_.ready_max_backlog) + " (not counting " +
                       std::to_string(s.data.paused_backlog) + " paused and " + std::to_string(s.data.unrouted) +
                       " unrouted)"};
  }
  if (s.data.oldest_due_wait_s && *s.data.oldest_due_wait_s > static_cast<double>(options_.ready_max_oldest_pending_s)) {
    return {false, "oldest due event has waited " + fixed3(*s.data.oldest_due_wait_s) +
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
  if (path == "/" || path == "/index.html") {
    if (!get) return only("GET, HEAD");
    AdminResponse r;
    r.content_type = "text/html; charset=utf-8";
    r.body = status_page_html();
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
    if (req.method != "POST") return only("POST");
    std::lock_guard<std::mutex> lock(mutex_);
    if (actions_.size() >= kMaxQueuedActions) return reply(json_error(503, "too many admin actions queued"));
    actions_.emplace_back(std::move(req), std::move(reply));
    cv_.notify_all();
    return;
  }
  reply(text(404, "not found"));
}

AdminResponse AdminApi::metrics_text() const {
  AdminResponse r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  std::string& out = r.body;
  out.reserve(8192);
  if (metrics_) metrics_->render(out);
  if (probe_.event_totals) {
    const auto ev = probe_.event_totals();
    static const char* kResults[4] = {"delivered", "retried", "dead", "released"};
    prom::header(out, "pgrelay_events_total", "counter",
                 "Events whose outcome this relay recorded, by result (delivered: every routed handler succeeded; "
                 "released: given back without spending an attempt).");
    for (size_t i = 0; i < 4; ++i) {
      prom::sample(out, "pgrelay_events_total", std::string("result=\"") + kResults[i] + "\"", static_cast<double>(ev[i]));
    }
  }
  const Sample s = sample();
  prom::header(out, "pgrelay_database_up", "gauge", "1 when the last database sample succeeded.");
  prom::sample(out, "pgrelay_database_up", "", s.ok ? 1 : 0);
  if (s.at != Clock::time_point{}) {
    prom::header(out, "pgrelay_sample_age_seconds", "gauge", "Age of the database gauges below.");
    prom::sample(out, "pgrelay_sample_age_seconds", "",
                 std::chrono::duration<double>(Clock::now() - s.at).count());
  }
  if (s.ok) {
    const DbSample& d = s.data;
    auto gauge = [&](const char* name, const char* help, double v) {
      prom::header(out, name, "gauge", help);
      prom::sample(out, name, "", v);
    };
    gauge("pgrelay_backlog_events",
          "Due events of routed, unpaused types waiting to be claimed (whole database; not counting events "
          "behind their key, paused or unrouted).",
          static_cast<double>(d.backlog));
    gauge("pgrelay_paused_backlog_events", "Events of paused types.", static_cast<double>(d.paused_backlog));
    gauge("pgrelay_blocked_events", "Events waiting behind an earlier unfinished event of their key.",
          static_cast<double>(d.blocked));
    gauge("pgrelay_unrouted_events", "Events of types no live relay routes (set aside until one does).",
          static_cast<double>(d.unrouted));
    gauge("pgrelay_processing_events", "Events held under a live lease.", static_cast<double>(d.processing));
    gauge("pgrelay_scheduled_events", "Pending events waiting for their retry time.", static_cast<double>(d.scheduled));
    gauge("pgrelay_dead_events", "Dead-lettered events (kept until retried or purged).", static_cast<double>(d.dead));
    gauge("pgrelay_oldest_due_wait_seconds", "How long the longest-waiting due event (unpaused) has waited; 0 if none.",
          d.oldest_due_wait_s.value_or(0));
    gauge("pgrelay_oldest_pending_age_seconds", "Age since creation of the oldest unfinished event; 0 if none.",
          d.oldest_pending_age_s.value_or(0));
    gauge("pgrelay_paused_types", "Event types paused by an operator.", static_cast<double>(d.paused.size()));
    prom::header(out, "pgrelay_events_by_type", "gauge", "Unfinished and dead events by type and status.");
    for (const auto& t : d.by_type) {
      const std::string l = "event_type=\"" + prom::label_value(t.event_type) + "\",status=";
      prom::sample(out, "pgrelay_events_by_type", l + "\"pending\"", static_cast<double>(t.pending));
      prom::sample(out, "pgrelay_events_by_type", l + "\"processing\"", static_cast<double>(t.processing));
      prom::sample(out, "pgrelay_events_by_type", l + "\"dead\"", static_cast<double>(t.dead));
      prom::sample(out, "pgrelay_events_by_type", l + "\"blocked\"", static_cast<double>(t.blocked));
      prom::sample(out, "pgrelay_events_by_type", l + "\"paused\"", static_cast<double>(t.paused_events));
      prom::sample(out, "pgrelay_events_by_type", l + "\"unrouted\"", static_cast<double>(t.unrouted));
    }
  }
  if (probe_.listener_alive) {
    prom::header(out, "pgrelay_listener_connected", "gauge", "1 while the LISTEN connection is up and proven.");
    prom::sample(out, "pgrelay_listener_connected", "", probe_.listener_alive() ? 1 : 0);
  }
  if (probe_.last_notification_age_s) {
    const double age = probe_.last_notification_age_s();
    if (age >= 0) {
      prom::header(out, "pgrelay_last_notification_age_seconds", "gauge",
                   "Seconds since the listener received any notification (self-probes included).");
      prom::sample(out, "pgrelay_last_notification_age_seconds", "", age);
    }
  }
  const auto breakers = BreakerBoard::global().all();
  prom::header(out, "pgrelay_circuit_breaker_state", "gauge", "Circuit breaker per handler and destination: 0 closed, 1 half-open, 2 open.");
  for (const auto& b : breakers) {
    prom::sample(out, "pgrelay_circuit_breaker_state",
                 "handler=\"" + prom::label_value(b.handler) + "\",destination=\"" + prom::label_value(b.destination) + "\"",
                 breaker_state_value(b.state));
  }
  prom::header(out, "pgrelay_circuit_breaker_consecutive_failures", "gauge", "Consecutive failures seen by the breaker.");
  for (const auto& b : breakers) {
    prom::sample(out, "pgrelay_circuit_breaker_consecutive_failures",
                 "handler=\"" + prom::label_value(b.handler) + "\",destination=\"" + prom::label_value(b.destination) + "\"",
                 b.consecutive_failures);
  }
  const Readiness ready = readiness();
  prom::header(out, "pgrelay_ready", "gauge", "1 when /readyz answers 200.");
  prom::sample(out, "pgrelay_ready", "", ready.ready ? 1 : 0);
  return r;
}

AdminResponse AdminApi::status_json() const {
  const Sample s = sample();
  const Readiness ready = readiness();
  std::string o = "{\"relay\":{\"id\":" + log::json_quoted(probe_.relay_id) + ",\"wake\":" + log::json_quoted(probe_.wake);
  o += ",\"listener_connected\":";
  o += probe_.listener_alive ? (probe_.listener_alive() ? "true" : "false") : "null";
  o += ",\"last_notification_age_s\":";
  const double age = probe_.last_notification_age_s ? probe_.last_notification_age_s() : -1;
  o += age >= 0 ? fixed3(age) : "null";
  o += "},\"ready\":{\"ok\":" + std::string(ready.ready ? "true" : "false") + ",\"reason\":" + log::json_quoted(ready.reason) + "}";
  o += ",\"database\":{\"ok\":" + std::string(s.ok ? "true" : "false") + ",\"error\":" + log::json_quoted(s.error) +
       ",\"sample_age_s\":" +
       (s.at == Clock::time_point{} ? "null" : fixed3(std::chrono::duration<double>(Clock::now() - s.at).count())) + "}";
  const DbSample& d = s.data;
  if (s.ok) {
    o += ",\"backlog\":" + std::to_string(d.backlog) + ",\"paused_backlog\":" + std::to_string(d.paused_backlog) +
         ",\"processing\":" + std::to_string(d.processing) + ",\"scheduled\":" + std::to_string(d.scheduled) +
         ",\"dead\":" + std::to_string(d.dead) + ",\"blocked\":" + std::to_string(d.blocked) +
         ",\"unrouted\":" + std::to_string(d.unrouted) + ",\"oldest_due_wait_s\":" + opt_number(d.oldest_due_wait_s) +
         ",\"oldest_pending_age_s\":" + opt_number(d.oldest_pending_age_s);
  } else {
    o += ",\"backlog\":null,\"paused_backlog\":null,\"processing\":null,\"scheduled\":null,\"dead\":null,"
         "\"oldest_due_wait_s\":null,\"oldest_pending_age_s\":null";
  }
  o += ",\"by_type\":[";
  for (size_t i = 0; i < d.by_type.size(); ++i) {
    const auto& t = d.by_type[i];
    o += std::string(i ? "," : "") + "{\"type\":" + log::json_quoted(t.event_type) + ",\"pending\":" +
         std::to_string(t.pending) + ",\"processing\":" + std::to_string(t.processing) + ",\"dead\":" +
         std::to_string(t.dead) + ",\"paused\":" + (t.paused ? "true" : "false") + "}";
  }
  o += "],\"paused\":[";
  for (size_t i = 0; i < d.paused.size(); ++i) {
    o += std::string(i ? "," : "") + "{\"type\":" + log::json_quoted(d.paused[i].event_type) + ",\"pattern\":" +
         (d.paused[i].pattern() ? "true" : "false") + ",\"paused_at\":" +
         log::json_quoted(d.paused[i].paused_at) + ",\"reason\":" + log::json_quoted(d.paused[i].reason) + "}";
  }
  o += "],\"relays\":[";
  for (size_t i = 0; i < d.relays.size(); ++i) {
    const auto& r = d.relays[i];
    o += std::string(i ? "," : "") + "{\"id\":" + log::json_quoted(r.id) + ",\"wake\":" + log::json_quoted(r.wake) +
         ",\"listen_alive\":" + (r.listen_alive ? "true" : "false") + ",\"seen_age_s\":" + fixed3(r.seen_age_s) +
         ",\"in_flight\":" + std::to_string(r.in_flight) + ",\"delivered\":" + std::to_string(r.delivered) + "}";
  }
  o += "]";
  std::array<int64_t, 4> ev{};
  std::vector<Metrics::HandlerTotals> totals;
  if (probe_.event_totals) ev = probe_.event_totals();
  if (metrics_) totals = metrics_->handler_totals();
  o += ",\"events\":{\"delivered\":" + std::to_string(ev[0]) + ",\"retried\":" + std::to_string(ev[1]) +
       ",\"dead\":" + std::to_string(ev[2]) + ",\"released\":" + std::to_string(ev[3]) + "}";
  std::map<std::string, Metrics::HandlerTotals> by;
  for (const auto& h : options_.handlers) by[h].handler = h;
  for (auto& t : totals) by[t.handler] = t;
  const auto breakers = BreakerBoard::global().all();
  o += ",\"handlers\":[";
  bool first = true;
  for (const auto& [name, t] : by) {
    o += std::string(first ? "" : ",") + "{\"name\":" + log::json_quoted(name) + ",\"delivered\":" +
         std::to_string(t.delivered) + ",\"retried\":" + std::to_string(t.retried) + ",\"dead\":" +
         std::to_string(t.dead) + ",\"deferred\":" + std::to_string(t.deferred) + ",\"mean_latency_ms\":" +
         (t.latency_count ? fixed3(t.latency_sum_s * 1000 / static_cast<double>(t.latency_count)) : "null") +
         ",\"breakers\":[";
    bool bfirst = true;
    for (const auto& b : breakers) {
      if (b.handler != name) continue;
      o += std::string(bfirst ? "" : ",") + "{\"destination\":" + log::json_quoted(b.destination) + ",\"state\":" +
           log::json_quoted(b.state) + ",\"consecutive_failures\":" + std::to_string(b.consecutive_failures) + "}";
      bfirst = false;
    }
    o += "]}";
    first = false;
  }
  o += "]}";
  AdminResponse r = json(200, std::move(o));
  r.content_type = "application/json";
  return r;
}

}  // namespace pgrelay
