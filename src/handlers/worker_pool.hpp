// The worker pool for handler kinds whose deliveries block a thread (command runs
// a program and waits for it, nats waits for the stream's publish ack): a fixed
// number of threads takes queued deliveries in order, so the kind's concurrency
// bounds the work in progress, and the relay thread never blocks.
//
// Shutdown: stop() answers every queued delivery with a retry at once (its
// attempt is not spent on the relay's shutdown) and lets the running ones finish;
// making them finish quickly (killing a child, closing a connection) is the
// handler's part. Thread-safety: every method may be called from any thread,
// except join(), which must not be called from a worker.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/outcome.hpp"

namespace pgrelay {

class WorkerPool {
 public:
  using Task = std::function<Outcome()>;      // the blocking delivery
  using Done = std::function<void(Outcome)>;  // told the task's outcome, on the worker's thread

  // Starts `threads` workers (at least one). `shutdown_reason` is the retry reason
  // of deliveries answered without running, e.g. "nats: relay is shutting down".
  WorkerPool(int threads, std::string shutdown_reason);
  ~WorkerPool();  // stop() and join()
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task`; a worker runs it and calls `done` with its outcome. After
  // stop(), `done` is called at once, on the caller's thread, with the retry.
  void submit(Task task, Done done);

  // Refuses new work and answers what is queued (on the caller's thread). Returns
  // false if the pool was already stopped (then it does nothing).
  bool stop();
  bool stopped() const;

  // Waits for the workers to finish their running tasks and exit. REQUIRES: stop().
  void join();

  int threads() const { return static_cast<int>(workers_.size()); }
  const std::string& shutdown_reason() const { return shutdown_reason_; }

 private:
  struct Job {
    Task task;
    Done done;
  };
  void work();

  const std::string shutdown_reason_;
  mutable std::mutex mutex_;  // guards jobs_ and stopped_
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stopped_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace pgrelay
