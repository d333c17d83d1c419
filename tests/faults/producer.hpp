// The fault runs' producer: commits events at a steady rate, each carrying a
// unique sequence number, half through pgrelay.emit() and half through a
// tracked table, and records the fate of every sequence number as the client
// saw it. A number is "committed" only after COMMIT returned.
//
// Runs one thread of its own; the accessors are thread-safe.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

namespace pgrelay::faults {

// What the producer knows about one sequence number.
enum class Fate : char {
  committed = 'C',   // COMMIT returned: must be delivered
  rolled_back = 'R', // the transaction was rolled back on purpose: must never be delivered
  savepoint = 'S',   // rolled back to a savepoint inside a committed transaction: never delivered
  failed = 'F',      // the transaction broke before COMMIT was sent: never delivered
  in_doubt = 'D',    // the connection broke during COMMIT: may or may not be delivered
};

struct ProducerOptions {
  std::string url;           // direct connection (not through the proxy)
  int events_per_s = 200;    // target rate
  int events_per_tx = 5;     // events per transaction
  int keys = 40;             // ordering keys per source (emit / tracked table)
  int rollback_every = 25;   // every n-th transaction is rolled back on purpose
  int savepoint_every = 10;  // every n-th transaction rolls one event back to a savepoint
  std::string log_path;      // one line per sequence number: "<fate> <seq> <ms>"
};

class Producer {
 public:
  explicit Producer(ProducerOptions options);
  ~Producer();  // stops
  // Creates the tracked table (run once, before start).
  static void prepare(const std::string& url);
  void start();
  void stop();

  // The highest sequence number whose COMMIT has returned (0 before any).
  int64_t last_committed() const { return last_committed_.load(); }
  std::unordered_map<int64_t, Fate> fates() const;
  // When (ms since start()) each committed sequence number's COMMIT returned.
  std::unordered_map<int64_t, int64_t> commit_ms() const;
  int reconnects() const { return reconnects_.load(); }

 private:
  void run();
  void record(int64_t seq, Fate fate, int64_t ms);

  ProducerOptions options_;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> last_committed_{0};
  std::atomic<int> reconnects_{0};
  mutable std::mutex mu_;
  std::unordered_map<int64_t, Fate> fates_;
  std::unordered_map<int64_t, int64_t> commit_ms_;
  std::ofstream log_;
  std::chrono::steady_clock::time_point t0_;
  std::thread thread_;
};

}  // namespace pgrelay::faults
