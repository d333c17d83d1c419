// The worker pool's queue and threads (handlers/worker_pool.hpp).
#include "handlers/worker_pool.hpp"

#include <algorithm>

namespace pgrelay {

WorkerPool::WorkerPool(int threads, std::string shutdown_reason) : shutdown_reason_(std::move(shutdown_reason)) {
  threads = std::max(1, threads);
  workers_.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
}

WorkerPool::~WorkerPool() {
  stop();
  join();
}

void WorkerPool::submit(Task task, Done done) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!stopped_) {
      jobs_.push_back({std::move(task), std::move(done)});
      cv_.notify_one();
      return;
    }
  }
  done(Outcome::retry(shutdown_reason_));
}

bool WorkerPool::stop() {
  std::deque<Job> orphans;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopped_) return false;
    stopped_ = true;
    orphans.swap(jobs_);
    cv_.notify_all();
  }
  for (auto& j : orphans) j.done(Outcome::retry(shutdown_reason_));
  return true;
}

bool WorkerPool::stopped() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stopped_;
}

void WorkerPool::join() {
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
}

void WorkerPool::work() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stopped_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job.done(job.task());
  }
}

}  // namespace pgrelay
