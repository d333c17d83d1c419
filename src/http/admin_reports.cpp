// The two reports the admin server renders from memory: the Prometheus text of
// /metrics and the /status.json document (which the status page reads). Both
// come from the relay's counters and the last database sample; neither touches
// the database. Members of AdminApi (http/admin_api.hpp), split from its routing.
#include <chrono>
#include <optional>
#include <string>

#include "core/breaker_board.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "http/admin_api.hpp"

namespace pgrelay {
namespace {

using Clock = std::chrono::steady_clock;

std::string opt_number(const std::optional<double>& v) { return v ? log::fixed3(*v) : "null"; }

}  // namespace

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
      prom::sample(out, "pgrelay_events_total", std::string("result=\"") + kResults[i] + "\"",
                   static_cast<double>(ev[i]));
    }
  }
  const Sample s = sample();
  prom::header(out, "pgrelay_database_up", "gauge", "1 when the last database sample succeeded.");
  prom::sample(out, "pgrelay_database_up", "", s.ok ? 1 : 0);
  if (s.at != Clock::time_point{}) {
    prom::header(out, "pgrelay_sample_age_seconds", "gauge", "Age of the database gauges below.");
    prom::sample(out, "pgrelay_sample_age_seconds", "", std::chrono::duration<double>(Clock::now() - s.at).count());
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
    if (!d.capture.slot.empty()) {
      gauge("pgrelay_capture_slot_lag_bytes",
            "capture \"wal\": WAL bytes between the server's position and what the capture slot confirmed.",
            static_cast<double>(d.capture.lag_bytes));
      gauge("pgrelay_capture_last_write_age_seconds",
            "capture \"wal\": seconds since a relay last wrote events from the slot; -1 if never.",
            d.capture.since_write_s);
      gauge("pgrelay_capture_slot_active", "capture \"wal\": 1 while a relay reads the slot.",
            d.capture.active ? 1 : 0);
    }
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
  // One gauge per breaker, labelled by handler and destination.
  const auto breaker_gauge = [&](const char* name, const char* help, auto value_of) {
    prom::header(out, name, "gauge", help);
    for (const auto& b : breakers) {
      prom::sample(
          out, name,
          "handler=\"" + prom::label_value(b.handler) + "\",destination=\"" + prom::label_value(b.destination) + "\"",
          value_of(b));
    }
  };
  breaker_gauge("pgrelay_circuit_breaker_state",
                "Circuit breaker per handler and destination: 0 closed, 1 half-open, 2 open.",
                [](const auto& b) { return breaker_state_value(b.state); });
  breaker_gauge("pgrelay_circuit_breaker_consecutive_failures", "Consecutive failures seen by the breaker.",
                [](const auto& b) { return b.consecutive_failures; });
  const Readiness ready = readiness();
  prom::header(out, "pgrelay_ready", "gauge", "1 when /readyz answers 200.");
  prom::sample(out, "pgrelay_ready", "", ready.ready ? 1 : 0);
  return r;
}

AdminResponse AdminApi::status_json() const {
  const Sample s = sample();
  const Readiness ready = readiness();
  std::string o =
      "{\"relay\":{\"id\":" + log::json_quoted(probe_.relay_id) + ",\"wake\":" + log::json_quoted(probe_.wake);
  o += ",\"listener_connected\":";
  o += probe_.listener_alive ? (probe_.listener_alive() ? "true" : "false") : "null";
  o += ",\"last_notification_age_s\":";
  const double age = probe_.last_notification_age_s ? probe_.last_notification_age_s() : -1;
  o += age >= 0 ? log::fixed3(age) : "null";
  o += "},\"ready\":{\"ok\":" + std::string(ready.ready ? "true" : "false") +
       ",\"reason\":" + log::json_quoted(ready.reason) + "}";
  o +=
      ",\"database\":{\"ok\":" + std::string(s.ok ? "true" : "false") + ",\"error\":" + log::json_quoted(s.error) +
      ",\"sample_age_s\":" +
      (s.at == Clock::time_point{} ? "null" : log::fixed3(std::chrono::duration<double>(Clock::now() - s.at).count())) +
      "}";
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
    o += std::string(i ? "," : "") + "{\"type\":" + log::json_quoted(t.event_type) +
         ",\"pending\":" + std::to_string(t.pending) + ",\"processing\":" + std::to_string(t.processing) +
         ",\"dead\":" + std::to_string(t.dead) + ",\"paused\":" + (t.paused ? "true" : "false") + "}";
  }
  o += "],\"paused\":[";
  for (size_t i = 0; i < d.paused.size(); ++i) {
    o += std::string(i ? "," : "") + d.paused[i].json();
  }
  o += "],\"relays\":[";
  for (size_t i = 0; i < d.relays.size(); ++i) {
    const auto& r = d.relays[i];
    o += std::string(i ? "," : "") + "{\"id\":" + log::json_quoted(r.id) + ",\"wake\":" + log::json_quoted(r.wake) +
         ",\"listen_alive\":" + (r.listen_alive ? "true" : "false") + ",\"seen_age_s\":" + log::fixed3(r.seen_age_s) +
         ",\"in_flight\":" + std::to_string(r.in_flight) + ",\"delivered\":" + std::to_string(r.delivered) + "}";
  }
  o += "]";
  std::array<int64_t, 4> ev{};
  std::vector<Metrics::HandlerTotals> totals;
  if (probe_.event_totals) ev = probe_.event_totals();
  if (metrics_) totals = metrics_->handler_totals();
  o += ",\"events\":{\"delivered\":" + std::to_string(ev[0]) + ",\"retried\":" + std::to_string(ev[1]) +
       ",\"dead\":" + std::to_string(ev[2]) + ",\"released\":" + std::to_string(ev[3]) + "}";
  {
    // Measured by the server between its last two samples, so every reader (and a
    // page rendered once) sees the same figure, not one that depends on its own clock.
    std::lock_guard<std::mutex> lock(mutex_);
    o += ",\"throughput_per_s\":" + log::fixed3(recent_throughput_per_s());
  }
  std::map<std::string, Metrics::HandlerTotals> by;
  for (const auto& h : options_.handlers) by[h].handler = h;
  for (auto& t : totals) by[t.handler] = t;
  const auto breakers = BreakerBoard::global().all();
  o += ",\"handlers\":[";
  bool first = true;
  for (const auto& [name, t] : by) {
    o += std::string(first ? "" : ",") + "{\"name\":" + log::json_quoted(name) +
         ",\"delivered\":" + std::to_string(t.delivered) + ",\"retried\":" + std::to_string(t.retried) +
         ",\"dead\":" + std::to_string(t.dead) + ",\"deferred\":" + std::to_string(t.deferred) +
         ",\"mean_latency_ms\":" +
         (t.latency_count ? log::fixed3(t.latency_sum_s * 1000 / static_cast<double>(t.latency_count)) : "null") +
         ",\"breakers\":[";
    bool bfirst = true;
    for (const auto& b : breakers) {
      if (b.handler != name) continue;
      o += std::string(bfirst ? "" : ",") + "{\"destination\":" + log::json_quoted(b.destination) +
           ",\"state\":" + log::json_quoted(b.state) +
           ",\"consecutive_failures\":" + std::to_string(b.consecutive_failures) + "}";
      bfirst = false;
    }
    o += "]}";
    first = false;
  }
  o += "]}";
  AdminResponse r = AdminResponse::json(200, std::move(o));
  r.content_type = "application/json";
  return r;
}

}  // namespace pgrelay
