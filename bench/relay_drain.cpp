// Drain rate: pgrelay's Relay (the library, in-process) draining a pre-inserted
// backlog with a no-op handler routed from "*". Runs --relays Relay objects in
// parallel (each its own connections, as separate replicas would) and stops them
// once --expect events are delivered; then checks the table is empty.
// Prints one JSON object: {"relays","events","seconds","claim","events_per_s","claim_batches","left"}.
// --claim transaction measures relay.claim = "transaction" instead of leases.
// --route TYPE routes only that type (default "*"); --handler-us N makes the handler
// take N microseconds per event (one worker thread: a key's events are serial anyway).
// --listen-db URL sets database.listen_url (LISTEN apart from --db, as behind PgBouncer).
// --ack-delay-ms N sets relay.ack_delay_ms (default pgrelay's own).
// --outcome dead makes the no-op handler dead-letter every event instead (counted as
// finished like a delivery), to compare the cost of recording each kind of outcome.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <chrono>
#include <iostream>
#include <thread>
#include <vector>

#include <pqxx/pqxx>

#include "bench_util.hpp"
#include "core/log.hpp"
#include "relay/relay.hpp"

namespace {

class NoopHandler : public pgrelay::Handler {
 public:
  explicit NoopHandler(bool dead) : dead_(dead) {}
  void deliver(std::shared_ptr<const pgrelay::Event>, Done done) override {
    done(dead_ ? pgrelay::Outcome::dead("bench: dead on purpose") : pgrelay::Outcome::ok());
  }

 private:
  bool dead_;
};

// Answers after a fixed time, from one worker thread, like a handler that waits on I/O.
class DelayHandler : public pgrelay::Handler {
 public:
  explicit DelayHandler(int64_t us) : us_(us), worker_([this] { work(); }) {}
  ~DelayHandler() override {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  void deliver(std::shared_ptr<const pgrelay::Event>, Done done) override {
    std::lock_guard<std::mutex> l(m_);
    queue_.push_back(std::move(done));
    cv_.notify_one();
  }

 private:
  void work() {
    for (;;) {
      Done d;
      {
        std::unique_lock<std::mutex> l(m_);
        cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        d = std::move(queue_.front());
        queue_.pop_front();
      }
      std::this_thread::sleep_for(std::chrono::microseconds(us_));
      d(pgrelay::Outcome::ok());
    }
  }
  int64_t us_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<Done> queue_;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace

int main(int argc, char** argv) {
  try {
    const auto f = bench::parse_flags(argc, argv);
    const std::string db = bench::flag(f, "db", "");
    const int relays = static_cast<int>(bench::flag_int(f, "relays", 1));
    const int64_t expect = bench::flag_int(f, "expect", 0);
    const int64_t timeout_s = bench::flag_int(f, "timeout-s", 300);
    pgrelay::log::configure(pgrelay::log::Level::warn, pgrelay::log::Format::text);

    std::vector<std::unique_ptr<pgrelay::Relay>> rs;
    for (int i = 0; i < relays; ++i) {
      pgrelay::Config c;
      c.database.url = db;
      c.database.listen_url = bench::flag(f, "listen-db", "");
      c.relay.id = "bench-drain-" + std::to_string(i);
      if (f.count("batch")) c.relay.batch_size = static_cast<int>(bench::flag_int(f, "batch", 256));
      if (f.count("max-in-flight")) c.relay.max_in_flight = static_cast<int>(bench::flag_int(f, "max-in-flight", 1024));
      c.relay.claim = bench::flag(f, "claim", "lease");  // lease | transaction
      c.relay.ack_delay_ms = bench::flag_int(f, "ack-delay-ms", c.relay.ack_delay_ms);
      c.attempts.enabled = bench::flag(f, "attempts", "on") == "on";  // the attempt log: on | off
      auto r = std::make_unique<pgrelay::Relay>(c);
      const int64_t handler_us = bench::flag_int(f, "handler-us", 0);
      if (handler_us > 0) r->add_handler("noop", std::make_unique<DelayHandler>(handler_us));
      else r->add_handler("noop", std::make_unique<NoopHandler>(bench::flag(f, "outcome", "done") == "dead"));
      r->add_route(bench::flag(f, "route", "*"), {"noop"});
      rs.push_back(std::move(r));
    }
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    std::atomic<int> failed{0};
    for (auto& r : rs) {
      threads.emplace_back([&r, &failed] {
        try {
          r->run();
        } catch (const std::exception& e) {
          std::cerr << "relay_drain: " << e.what() << "\n";
          ++failed;
        }
      });
    }
    int64_t delivered = 0;
    const auto give_up = t0 + std::chrono::seconds(timeout_s);
    while (std::chrono::steady_clock::now() < give_up && !failed) {
      delivered = 0;
      for (auto& r : rs) delivered += r->stats().delivered.load() + r->stats().dead.load();
      if (delivered >= expect) break;
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    for (auto& r : rs) r->request_stop();
    for (auto& t : threads) t.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int64_t batches = 0;
    delivered = 0;
    for (auto& r : rs) {
      batches += r->stats().claim_batches.load();
      delivered += r->stats().delivered.load() + r->stats().dead.load();
    }
    pqxx::connection c(db);
    pqxx::nontransaction tx(c);
    const int64_t left =
        tx.exec1("SELECT count(*) FROM pgrelay.db_events WHERE status NOT IN ('done', 'dead')")[0].as<int64_t>();
    std::cout << "{\"relays\":" << relays << ",\"events\":" << delivered << ",\"seconds\":" << s << ",\"claim\":\""
              << bench::flag(f, "claim", "lease") << "\",\"outcome\":\"" << bench::flag(f, "outcome", "done")
              << "\",\"attempts\":\"" << bench::flag(f, "attempts", "on") << "\",\"events_per_s\":" << delivered / s
              << ",\"claim_batches\":" << batches << ",\"left\":" << left << "}\n";
    return (failed || delivered < expect) ? 1 : 0;
  } catch (const std::exception& e) {
    std::cerr << "relay_drain: " << e.what() << "\n";
    return 1;
  }
}
