// The fault runs' producer: several connections commit events at a steady rate
// into the same keys at once, each event carrying a unique sequence number, half
// through pgrelay.emit() and half through a tracked table, and records the fate
// of every sequence number as the client saw it. A number is "committed" only
// after COMMIT returned.
//
// Each transaction also advances a commit counter per key it wrote
// (public.fault_key_clock), after its events and just before COMMIT: the row lock
// makes the counter's order the commit order of that key's transactions, seen
// from outside pgrelay, so the checker can verify that a key's ids follow its
// commit order instead of taking it on trust.
//
// Runs one thread per connection; the accessors are thread-safe.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace pgrelay::faults {

// What the producer knows about one sequence number.
enum class Fate : char {
  committed = 'C',    // COMMIT returned: must be delivered
  rolled_back = 'R',  // the transaction was rolled back on purpose: must never be delivered
  savepoint = 'S',    // rolled back to a savepoint inside a committed transaction: never delivered
  failed = 'F',       // the transaction broke before COMMIT was sent: never delivered
  in_doubt = 'D',     // the connection broke during COMMIT: may or may not be delivered
};

struct Produced {
  Fate fate = Fate::failed;
  int64_t ms = 0;         // when the fate was known (for committed: COMMIT returned), ms since start()
  int64_t began_ms = 0;   // when its transaction began
  int producer = 0;       // which connection wrote it, 0 .. connections-1
  std::string key;        // its event key, as pgrelay.db_events holds it
  int64_t key_clock = 0;  // its key's commit counter in its transaction; 0 if it never got that far
};

struct ProducerOptions {
  std::string url;           // direct connection (not through the proxy)
  int events_per_s = 200;    // target rate, all connections together
  int events_per_tx = 5;     // events per transaction
  int keys = 40;             // ordering keys per source (emit / tracked table), shared by every connection
  int connections = 3;       // producers writing at once, each its own connection and pace
  int rollback_every = 25;   // every n-th transaction is rolled back on purpose
  int savepoint_every = 10;  // every n-th transaction rolls one event back to a savepoint
  int max_work_us = 10000;   // each transaction sleeps 0 .. this long after its events, before COMMIT
  // One line per sequence number: "<fate> <seq> <ms> <producer> <key> <key clock>".
  std::string log_path;
};

class Producer {
 public:
  explicit Producer(ProducerOptions options);
  ~Producer();  // stops
  // Creates the tracked table and the key counters (run once, before start).
  static void prepare(const std::string& url, int keys);
  void start();
  void stop();
  // The next transaction of the first connection carries `events` events instead
  // of events_per_tx (and is never rolled back on purpose): a backlog at once.
  void burst(int events) { burst_ = events; }

  // The highest sequence number whose COMMIT has returned (0 before any).
  int64_t last_committed() const { return last_committed_.load(); }
  std::unordered_map<int64_t, Produced> produced() const;
  int reconnects() const { return reconnects_.load(); }

 private:
  void run(int index);
  void record(int64_t seq, const Produced& p);

  ProducerOptions options_;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> next_seq_{1};
  std::atomic<int64_t> next_tx_{1};
  std::atomic<int> burst_{0};
  std::atomic<int64_t> last_committed_{0};
  std::atomic<int> reconnects_{0};
  mutable std::mutex mu_;
  std::unordered_map<int64_t, Produced> produced_;
  std::ofstream log_;
  std::chrono::steady_clock::time_point t0_;
  std::vector<std::thread> threads_;
};

}  // namespace pgrelay::faults
