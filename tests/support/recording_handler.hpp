// An in-process handler for tests: records every delivery (event id, key,
// attempt, time) and answers with a scripted Outcome, optionally after a delay
// on its own worker threads, so overlap per key becomes observable.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "handlers/handler.hpp"
#include "relay/relay.hpp"

namespace pgrelay::test {

struct Delivery {
  int64_t id;
  std::optional<std::string> key;
  int attempt;
  std::chrono::steady_clock::time_point at;
};

class RecordingHandler : public Handler {
 public:
  using Script = std::function<Outcome(const Event&)>;
  // With workers > 0, outcomes are reported from worker threads after a random
  // delay of up to max_delay_us; otherwise synchronously inside deliver().
  explicit RecordingHandler(Script script = {}, int workers = 0, int max_delay_us = 0)
      : script_(std::move(script)), max_delay_us_(max_delay_us) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this, i] { work(i); });
  }
  ~RecordingHandler() override {
    {
      std::lock_guard<std::mutex> l(qm_);
      stop_ = true;
    }
    qcv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  void deliver(std::shared_ptr<const Event> e, Done done) override {
    {
      std::lock_guard<std::mutex> l(m_);
      log_.push_back({e->id, e->key, e->attempt, std::chrono::steady_clock::now()});
      if (e->key && ++active_[*e->key] > 1) overlaps_++;
    }
    if (threads_.empty()) {
      finish(*e, done);
      return;
    }
    std::lock_guard<std::mutex> l(qm_);
    queue_.push_back({std::move(e), std::move(done)});
    qcv_.notify_one();
  }

  std::vector<Delivery> deliveries() const {
    std::lock_guard<std::mutex> l(m_);
    return log_;
  }
  size_t count() const {
    std::lock_guard<std::mutex> l(m_);
    return log_.size();
  }
  // Deliveries of one key that overlapped in time (must stay 0).
  int overlaps() const { return overlaps_; }

 private:
  void finish(const Event& e, const Done& done) {
    Outcome o = script_ ? script_(e) : Outcome::ok();
    {
      std::lock_guard<std::mutex> l(m_);
      if (e.key) --active_[*e.key];
    }
    done(std::move(o));
  }
  void work(int seed) {
    std::mt19937 rng(static_cast<unsigned>(seed));
    for (;;) {
      std::pair<std::shared_ptr<const Event>, Done> job;
      {
        std::unique_lock<std::mutex> l(qm_);
        qcv_.wait(l, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      if (max_delay_us_ > 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % max_delay_us_));
      finish(*job.first, job.second);
    }
  }

  Script script_;
  int max_delay_us_;
  mutable std::mutex m_;
  std::vector<Delivery> log_;
  std::map<std::string, int> active_;
  std::atomic<int> overlaps_{0};
  std::mutex qm_;
  std::condition_variable qcv_;
  std::deque<std::pair<std::shared_ptr<const Event>, Done>> queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// Adds a RecordingHandler named `name` to `relay`, routed from `match`; returns
// it (owned by the relay). REQUIRES: before the relay runs.
inline RecordingHandler* add_recorder(Relay& relay, const std::string& match = "*", const std::string& name = "rec",
                                      RetryPolicy retry = {}, int64_t timeout_ms = 30000) {
  auto h = std::make_unique<RecordingHandler>();
  RecordingHandler* rec = h.get();
  relay.add_handler(name, std::move(h), retry, timeout_ms);
  relay.add_route(match, {name});
  return rec;
}

// Runs a Relay on its own thread; stops and joins it on destruction.
class RelayThread {
 public:
  explicit RelayThread(Relay& relay)
      : relay_(relay), thread_([this] {
          try {
            relay_.run();
          } catch (const std::exception& e) {
            error_ = e.what();
          }
        }) {}
  ~RelayThread() { stop(); }
  void stop() {
    if (!thread_.joinable()) return;
    relay_.request_stop();
    thread_.join();
  }
  const std::string& error() const { return error_; }

 private:
  Relay& relay_;
  std::string error_;
  std::thread thread_;
};

// A config for tests: the database, short timings, no handlers.
inline Config test_config(const std::string& url) {
  Config c;
  c.database.url = url;
  c.relay.poll_interval_ms = 500;
  c.relay.lease_ms = 5000;
  c.relay.shutdown_timeout_ms = 2000;
  c.log.level = "warn";
  return c;
}

}  // namespace pgrelay::test
