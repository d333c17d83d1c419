// Counters and histograms of deliveries, rendered for Prometheus.
#include "core/metrics.hpp"

#include <cmath>
#include <cstdio>

namespace pgrelay {
namespace {

const std::vector<double> kLatencyBounds = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                            1,     2.5,   5,    10,    30,   60,  300};
const std::vector<double> kBatchBounds = {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000};

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

}  // namespace

const char* result_name(Metrics::Result r) {
  switch (r) {
    case Metrics::Result::delivered: return "delivered";
    case Metrics::Result::retried: return "retried";
    case Metrics::Result::dead: return "dead";
    case Metrics::Result::deferred: return "deferred";
  }
  return "delivered";
}

namespace prom {

std::string label_value(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void sample(std::string& out, std::string_view name, const std::string& labels, double value) {
  out += name;
  if (!labels.empty()) {
    out += '{';
    out += labels;
    out += '}';
  }
  out += ' ';
  out += number(value);
  out += '\n';
}

}  // namespace prom

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size(), 0) {}

void Histogram::observe(double v) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (v <= bounds_[i]) {
      ++counts_[i];
      break;
    }
  }
  ++count_;
  sum_ += v;
}

double Histogram::quantile(double q) const {
  if (count_ == 0 || bounds_.empty()) return 0;
  const double want = q * static_cast<double>(count_);
  int64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    if (static_cast<double>(cumulative) >= want) return bounds_[i];
  }
  return bounds_.back();
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  const std::string sep = labels.empty() ? "" : ",";
  int64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    prom::sample(out, name + "_bucket", labels + sep + "le=\"" + number(bounds_[i]) + "\"",
                 static_cast<double>(cumulative));
  }
  prom::sample(out, name + "_bucket", labels + sep + "le=\"+Inf\"", static_cast<double>(count_));
  prom::sample(out, name + "_sum", labels, sum_);
  prom::sample(out, name + "_count", labels, static_cast<double>(count_));
}

Metrics::Metrics() : claim_batch_(kBatchBounds) {}

void Metrics::record_delivery(const std::string& type, const std::string& handler, Result result, double latency_s) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++by_type_handler_[{type, handler}][static_cast<size_t>(result)];
  auto it = latency_.find(handler);
  if (it == latency_.end()) it = latency_.emplace(handler, Histogram(kLatencyBounds)).first;
  it->second.observe(latency_s);
}

void Metrics::record_claim(int batch_size, int lease_expiries) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++claims_;
  claim_batch_.observe(batch_size);
  lease_expiries_ += lease_expiries;
}

void Metrics::record_retention(int64_t deleted) {
  std::lock_guard<std::mutex> lock(mutex_);
  retention_deleted_ += deleted;
}

void Metrics::record_guard(Guard what) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++guards_[static_cast<size_t>(what)];
}

std::vector<Metrics::HandlerTotals> Metrics::handler_totals() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::map<std::string, HandlerTotals> by;
  for (const auto& [k, v] : by_type_handler_) {
    HandlerTotals& t = by[k.second];
    t.handler = k.second;
    t.delivered += v[0];
    t.retried += v[1];
    t.dead += v[2];
    t.deferred += v[3];
  }
  for (const auto& [h, hist] : latency_) {
    HandlerTotals& t = by[h];
    t.handler = h;
    t.latency_sum_s = hist.sum();
    t.latency_count = hist.count();
    t.latency_p99_s = hist.quantile(0.99);
  }
  std::vector<HandlerTotals> out;
  for (auto& [h, t] : by) out.push_back(std::move(t));
  return out;
}

int64_t Metrics::lease_expiries() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return lease_expiries_;
}

void Metrics::render(std::string& out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  static const char* kDeliveryHelp[4] = {
      "Deliveries a handler completed successfully, by event type and handler.",
      "Deliveries that failed and were scheduled for another attempt, by event type and handler.",
      "Deliveries that dead-lettered their event, by event type and handler.",
      "Deliveries deferred without spending an attempt (open circuit breaker), by event type and handler."};
  for (size_t r = 0; r < 4; ++r) {
    const std::string name = std::string("pgrelay_deliveries_") + result_name(static_cast<Result>(r)) + "_total";
    prom::header(out, name, "counter", kDeliveryHelp[r]);
    for (const auto& [k, v] : by_type_handler_) {
      prom::sample(out, name,
                   "event_type=\"" + prom::label_value(k.first) + "\",handler=\"" + prom::label_value(k.second) + "\"",
                   static_cast<double>(v[r]));
    }
  }
  prom::header(out, "pgrelay_handler_latency_seconds", "histogram",
               "Time from claim to a handler's outcome, by handler.");
  for (const auto& [h, hist] : latency_) {
    hist.render(out, "pgrelay_handler_latency_seconds", "handler=\"" + prom::label_value(h) + "\"");
  }
  prom::header(out, "pgrelay_claim_batch_size", "histogram", "Events returned by one claim round trip.");
  claim_batch_.render(out, "pgrelay_claim_batch_size", "");
  prom::header(out, "pgrelay_lease_expiries_total", "counter",
               "Events reclaimed because another claim's lease ran out (a relay died or stalled).");
  prom::sample(out, "pgrelay_lease_expiries_total", "", static_cast<double>(lease_expiries_));
  prom::header(out, "pgrelay_retention_deleted_total", "counter",
               "Finished events deleted by retention (relay.done_retention_s) on this relay.");
  prom::sample(out, "pgrelay_retention_deleted_total", "", static_cast<double>(retention_deleted_));
  static const char* kGuards[3][2] = {
      {"pgrelay_outcomes_refused_total",
       "Outcomes the database refused because the event's claim token no longer matched (its lease ran out)."},
      {"pgrelay_own_reclaims_total",
       "Events this relay claimed again while still holding them (its lease ran out before it could renew it)."},
      {"pgrelay_invariant_violations_total",
       "Bookkeeping inconsistencies the relay caught and refused (a second sql run, an outcome before its "
       "handler answered); should stay 0."}};
  for (size_t g = 0; g < 3; ++g) {
    prom::header(out, kGuards[g][0], "counter", kGuards[g][1]);
    prom::sample(out, kGuards[g][0], "", static_cast<double>(guards_[g]));
  }
}

}  // namespace pgrelay
