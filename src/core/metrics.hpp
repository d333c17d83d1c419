// In-process delivery metrics: counters per event type and handler, handler
// latency and claim batch size histograms, rendered in the Prometheus text
// format (version 0.0.4). The relay thread records; the admin server renders
// from its own thread. Thread-safe (one mutex; recording is a map lookup).
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgrelay {

// A Prometheus histogram with fixed upper bounds (the +Inf bucket is implied).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends `name`_bucket/_sum/_count lines with `labels` (`a="b",...` or empty).
  void render(std::string& out, const std::string& name, const std::string& labels) const;
  int64_t count() const { return count_; }
  double sum() const { return sum_; }
  // The upper bound of the bucket holding the q-quantile (0 < q <= 1), the largest bound
  // when it lies past them; 0 when nothing was observed. As coarse as the buckets.
  double quantile(double q) const;

 private:
  std::vector<double> bounds_;
  std::vector<int64_t> counts_;  // per bound, not cumulative
  int64_t count_ = 0;
  double sum_ = 0;
};

class Metrics {
 public:
  // What became of one handler's delivery of one event (or of the event as a whole).
  enum class Result { delivered, retried, dead, deferred };

  Metrics();

  // One handler finished one delivery attempt of an event of `type`.
  void record_delivery(const std::string& type, const std::string& handler, Result result, double latency_s);
  void record_claim(int batch_size, int lease_expiries);
  // Finished events removed by retention.
  void record_retention(int64_t deleted);
  // What keeps the relay's bookkeeping honest: outcomes the database refused
  // (fenced), events claimed again while still held, and refused inconsistencies.
  enum class Guard { outcome_refused, own_reclaim, invariant_violation };
  void record_guard(Guard what);

  struct HandlerTotals {
    std::string handler;
    int64_t delivered = 0, retried = 0, dead = 0, deferred = 0;
    double latency_sum_s = 0;
    int64_t latency_count = 0;
    double latency_p99_s = 0;  // Histogram::quantile(0.99) of its latencies since start
  };
  std::vector<HandlerTotals> handler_totals() const;
  int64_t lease_expiries() const;

  // Appends every counter and histogram, each with HELP and TYPE lines.
  void render(std::string& out) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, std::array<int64_t, 4>> by_type_handler_;
  std::map<std::string, Histogram> latency_;  // by handler
  Histogram claim_batch_;
  int64_t claims_ = 0;
  int64_t lease_expiries_ = 0;
  int64_t retention_deleted_ = 0;
  std::array<int64_t, 3> guards_{};
};

const char* result_name(Metrics::Result r);

// Prometheus text helpers.
namespace prom {
// `s` escaped for a label value (backslash, quote, newline).
std::string label_value(std::string_view s);
// HELP and TYPE lines.
void header(std::string& out, std::string_view name, std::string_view type, std::string_view help);
// One sample; `labels` is `a="b",c="d"` or empty.
void sample(std::string& out, std::string_view name, const std::string& labels, double value);
}  // namespace prom

}  // namespace pgrelay
