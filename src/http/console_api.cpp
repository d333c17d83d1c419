// The console's JSON API (GET /admin/api/..., behind the admin token, like the actions):
// per-handler health and the last hour of throughput, backlog and oldest-pending age from
// the relay's memory; dead letters, one event's receipt and a search from the database.
// Members of AdminApi (http/admin_api.hpp).
#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <string>

#include <pqxx/pqxx>

#include "core/breaker_board.hpp"
#include "core/log.hpp"
#include "http/admin_api.hpp"
#include "store/admin_queries.hpp"
#include "store/connection.hpp"
#include "store/receipt_queries.hpp"

namespace pgrelay {
namespace {

constexpr auto kHistoryKept = std::chrono::hours(1);
constexpr size_t kHistoryMaxPoints = 4000;          // an hour at the fastest sample interval tests use
constexpr int64_t kHealthWindowMs = 5 * 60 * 1000;  // per-handler rates over the last five minutes

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string opt_number(const std::optional<double>& v) { return v ? log::fixed3(*v) : "null"; }

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The value of `name` in the target's query string, percent-decoded; nullopt when absent or empty.
std::optional<std::string> query_param(const std::string& target, const std::string& name) {
  const size_t q = target.find('?');
  if (q == std::string::npos) return std::nullopt;
  size_t at = q + 1;
  while (at <= target.size()) {
    size_t end = target.find('&', at);
    if (end == std::string::npos) end = target.size();
    const std::string pair = target.substr(at, end - at);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name && eq != std::string::npos) {
      std::string out;
      for (size_t i = eq + 1; i < pair.size(); ++i) {
        if (pair[i] == '+') {
          out += ' ';
        } else if (pair[i] == '%' && i + 2 < pair.size() && hex_digit(pair[i + 1]) >= 0 &&
                   hex_digit(pair[i + 2]) >= 0) {
          out += static_cast<char>(hex_digit(pair[i + 1]) * 16 + hex_digit(pair[i + 2]));
          i += 2;
        } else {
          out += pair[i];
        }
      }
      if (out.empty()) return std::nullopt;
      const std::string problem = text_problem(out);
      if (!problem.empty()) throw InvalidText("\"" + name + "\" " + problem);
      return out;
    }
    at = end + 1;
  }
  return std::nullopt;
}

std::optional<int64_t> int_param(const std::string& target, const std::string& name) {
  const auto v = query_param(target, name);
  if (!v) return std::nullopt;
  size_t used = 0;
  int64_t n = 0;
  try {
    n = std::stoll(*v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v->size() || n < 0) throw InvalidText("\"" + name + "\" must be a non-negative integer");
  return n;
}

std::string dead_json(const DeadEvent& d) {
  return "{\"id\":" + std::to_string(d.id) + ",\"type\":" + log::json_quoted(d.type) +
         ",\"key\":" + (d.key ? log::json_quoted(*d.key) : "null") + ",\"attempts\":" + std::to_string(d.attempts) +
         ",\"last_error\":" + log::json_quoted(d.last_error) + ",\"created_at\":" + log::json_quoted(d.created_at) +
         ",\"finished_at\":" + log::json_quoted(d.finished_at) + "}";
}

}  // namespace

void AdminApi::record_history(const Sample& s) {
  HistoryPoint p;
  p.at_ms = now_ms();
  if (probe_.event_totals) {
    const auto ev = probe_.event_totals();
    p.delivered = ev[0];
    p.failed = ev[1] + ev[2];
  }
  if (s.ok) {
    p.backlog = s.data.backlog;
    p.oldest_due_wait_s = s.data.oldest_due_wait_s;
  }
  if (metrics_) p.handlers = metrics_->handler_totals();
  history_.push_back(std::move(p));
  const int64_t keep_after = history_.back().at_ms - std::chrono::milliseconds(kHistoryKept).count();
  while (!history_.empty() && (history_.front().at_ms < keep_after || history_.size() > kHistoryMaxPoints)) {
    history_.pop_front();
  }
}

namespace {

// Throughput between a history point and the one before it: events finished per second.
template <typename Point>
double throughput_between(const Point& before, const Point& after) {
  if (after.at_ms <= before.at_ms) return 0;
  return static_cast<double>(after.delivered - before.delivered) * 1000.0 /
         static_cast<double>(after.at_ms - before.at_ms);
}

}  // namespace

double AdminApi::recent_throughput_per_s() const {
  const size_t n = history_.size();
  return n < 2 ? 0 : throughput_between(history_[n - 2], history_[n - 1]);
}

AdminResponse AdminApi::console_history() const {
  std::string o = "{\"interval_ms\":" + std::to_string(options_.sample_interval_ms) + ",\"points\":[";
  std::lock_guard<std::mutex> lock(mutex_);
  for (size_t i = 0; i < history_.size(); ++i) {
    const HistoryPoint& p = history_[i];
    const double per_s = i > 0 ? throughput_between(history_[i - 1], p) : 0;
    o += std::string(i ? "," : "") + "{\"at\":" + std::to_string(p.at_ms) +
         ",\"delivered_total\":" + std::to_string(p.delivered) + ",\"failed_total\":" + std::to_string(p.failed) +
         ",\"throughput_per_s\":" + log::fixed3(per_s) +
         ",\"backlog\":" + (p.backlog ? std::to_string(*p.backlog) : "null") +
         ",\"oldest_due_wait_s\":" + opt_number(p.oldest_due_wait_s) + "}";
  }
  return AdminResponse::json(200, o + "]}");
}

AdminResponse AdminApi::console_overview() const {
  const Sample s = sample();
  std::vector<Metrics::HandlerTotals> now_totals;
  if (metrics_) now_totals = metrics_->handler_totals();
  // Each handler's totals at the start of the window: the oldest point inside it.
  std::map<std::string, Metrics::HandlerTotals> before;
  int64_t window_ms = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const int64_t since = now_ms() - kHealthWindowMs;
    for (const HistoryPoint& p : history_) {
      if (p.at_ms < since) continue;
      for (const auto& t : p.handlers) before[t.handler] = t;
      window_ms = now_ms() - p.at_ms;
      break;
    }
  }
  std::map<std::string, Metrics::HandlerTotals> by;
  for (const auto& h : options_.handlers) by[h].handler = h;
  for (auto& t : now_totals) by[t.handler] = t;
  const auto breakers = BreakerBoard::global().all();
  std::string o = "{\"relay\":" + log::json_quoted(probe_.relay_id) +
                  ",\"window_s\":" + log::fixed3(static_cast<double>(window_ms) / 1000.0) + ",\"handlers\":[";
  bool first = true;
  for (const auto& [name, t] : by) {
    const Metrics::HandlerTotals b = before.count(name) ? before.at(name) : Metrics::HandlerTotals{};
    const int64_t ok = t.delivered - b.delivered;
    const int64_t failed = (t.retried - b.retried) + (t.dead - b.dead);
    const int64_t n = t.latency_count - b.latency_count;
    std::string state = "closed";
    std::string breaker_list;
    for (const auto& br : breakers) {
      if (br.handler != name) continue;
      if (br.state != "closed") state = br.state;
      breaker_list += std::string(breaker_list.empty() ? "" : ",") +
                      "{\"destination\":" + log::json_quoted(br.destination) +
                      ",\"state\":" + log::json_quoted(br.state) +
                      ",\"consecutive_failures\":" + std::to_string(br.consecutive_failures) + "}";
    }
    o += std::string(first ? "" : ",") + "{\"name\":" + log::json_quoted(name) + ",\"ok\":" + std::to_string(ok) +
         ",\"failed\":" + std::to_string(failed) + ",\"deferred\":" + std::to_string(t.deferred - b.deferred) +
         ",\"success_rate\":" +
         (ok + failed > 0 ? log::fixed3(static_cast<double>(ok) / static_cast<double>(ok + failed)) : "null") +
         ",\"mean_latency_ms\":" +
         (n > 0 ? log::fixed3((t.latency_sum_s - b.latency_sum_s) * 1000 / static_cast<double>(n)) : "null") +
         ",\"p99_latency_ms\":" + (t.latency_count ? log::fixed3(t.latency_p99_s * 1000) : "null") +
         ",\"breaker\":" + log::json_quoted(state) + ",\"breakers\":[" + breaker_list + "]}";
    first = false;
  }
  o += "],\"database\":{\"ok\":" + std::string(s.ok ? "true" : "false") + ",\"error\":" + log::json_quoted(s.error) +
       "}";
  const DbSample& d = s.data;
  o += ",\"backlog\":" + std::to_string(d.backlog) + ",\"dead\":" + std::to_string(d.dead) +
       ",\"oldest_due_wait_s\":" + opt_number(d.oldest_due_wait_s) + ",\"paused\":[";
  for (size_t i = 0; i < d.paused.size(); ++i) {
    o += std::string(i ? "," : "") + "{\"type\":" + log::json_quoted(d.paused[i].event_type) +
         ",\"paused_at\":" + log::json_quoted(d.paused[i].paused_at) +
         ",\"reason\":" + log::json_quoted(d.paused[i].reason) +
         ",\"paused_by\":" + log::json_quoted(d.paused[i].paused_by) + "}";
  }
  // Unrouted: events set aside because no live relay routes their type (a config gap).
  o += "],\"unrouted\":[";
  first = true;
  for (const auto& t : d.by_type) {
    if (t.unrouted == 0) continue;
    o += std::string(first ? "" : ",") + "{\"type\":" + log::json_quoted(t.event_type) +
         ",\"events\":" + std::to_string(t.unrouted) + "}";
    first = false;
  }
  return AdminResponse::json(200, o + "]}");
}

AdminResponse AdminApi::run_read(const AdminRequest& req) {
  const std::string path = req.target.substr(0, req.target.find('?'));
  try {
    if (!action_conn_) action_conn_ = connect(options_.database_url, "admin-action");
    pqxx::connection& c = *action_conn_;
    DeadFilter f;
    f.type = query_param(req.target, "type");
    f.key = query_param(req.target, "key");
    f.error_contains = query_param(req.target, "error");
    f.older_than_s = int_param(req.target, "older_than_s");
    f.limit = static_cast<int>(std::min<int64_t>(int_param(req.target, "limit").value_or(100), 1000));
    if (const auto id = int_param(req.target, "id")) f.ids.push_back(*id);
    if (path == "/admin/api/dead") {
      std::string o = "{\"dead\":[";
      const auto dead = list_dead(c, f);
      for (size_t i = 0; i < dead.size(); ++i) o += (i ? "," : "") + dead_json(dead[i]);
      return AdminResponse::json(200, o + "]}");
    }
    if (path == "/admin/api/event") {
      if (f.ids.empty()) return AdminResponse::json_error(400, path + ": \"id\" is required");
      return AdminResponse::json(200, event_history_json(c, f.ids[0]));
    }
    if (path == "/admin/api/events") {
      std::string o = "{\"events\":[";
      const auto rows = list_events(c, f, query_param(req.target, "status"));
      for (size_t i = 0; i < rows.size(); ++i) {
        const EventRow& e = rows[i];
        o += std::string(i ? "," : "") + "{\"id\":" + std::to_string(e.id) + ",\"type\":" + log::json_quoted(e.type) +
             ",\"key\":" + (e.key ? log::json_quoted(*e.key) : "null") + ",\"status\":" + log::json_quoted(e.status) +
             ",\"attempts\":" + std::to_string(e.attempts) + ",\"last_error\":" + log::json_quoted(e.last_error) +
             ",\"created_at\":" + log::json_quoted(e.created_at) + "}";
      }
      return AdminResponse::json(200, o + "]}");
    }
    return AdminResponse::json_error(404, "unknown console read " + path +
                                              " (known: /admin/api/overview, /admin/api/history, /admin/api/dead, "
                                              "/admin/api/event, /admin/api/events)");
  } catch (const InvalidText& e) {
    return AdminResponse::json_error(400, path + ": " + e.what());
  } catch (const std::exception& e) {
    action_conn_.reset();
    log::error("admin read failed", {{"path", path}, {"error", e.what()}});
    return AdminResponse::json_error(503, path + ": database unavailable: " + e.what());
  }
}

}  // namespace pgrelay
