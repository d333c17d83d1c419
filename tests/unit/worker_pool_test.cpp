// The worker pool shared by blocking handler kinds (handlers/worker_pool.hpp).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "handlers/worker_pool.hpp"

using namespace pgrelay;

namespace {
// A latch the tasks wait on, so a test decides when they finish.
struct Gate {
  std::mutex m;
  std::condition_variable cv;
  bool open = false;
  void wait() {
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [&] { return open; });
  }
  void release() {
    std::lock_guard<std::mutex> lock(m);
    open = true;
    cv.notify_all();
  }
};

template <class F>
bool eventually(F f) {
  for (int i = 0; i < 2000; ++i) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return f();
}
}  // namespace

TEST_CASE("a submitted task runs on a worker and its outcome reaches done") {
  WorkerPool pool(2, "stopping");
  std::atomic<int> oks{0};
  for (int i = 0; i < 10; ++i) {
    pool.submit([] { return Outcome::ok(); }, [&](Outcome o) { oks += o.kind == Outcome::Kind::ok; });
  }
  CHECK(eventually([&] { return oks == 10; }));
}

TEST_CASE("no more tasks run at once than the pool has threads") {
  Gate gate;
  WorkerPool pool(3, "stopping");
  CHECK(pool.threads() == 3);
  std::atomic<int> running{0}, most{0}, finished{0};
  for (int i = 0; i < 12; ++i) {
    pool.submit(
        [&] {
          const int now = ++running;
          int seen = most.load();
          while (now > seen && !most.compare_exchange_weak(seen, now)) {
          }
          gate.wait();
          --running;
          return Outcome::ok();
        },
        [&](Outcome) { ++finished; });
  }
  CHECK(eventually([&] { return running == 3; }));
  gate.release();
  CHECK(eventually([&] { return finished == 12; }));
  CHECK(most == 3);
}

TEST_CASE("stopping answers queued deliveries with a retry at once and lets running ones finish") {
  Gate gate;
  WorkerPool pool(1, "test: relay is shutting down");
  std::atomic<bool> started{false};
  std::vector<Outcome> answers;
  std::mutex m;
  auto record = [&](Outcome o) {
    std::lock_guard<std::mutex> lock(m);
    answers.push_back(std::move(o));
  };
  pool.submit(
      [&] {
        started = true;
        gate.wait();
        return Outcome::ok();
      },
      record);
  REQUIRE(eventually([&] { return started.load(); }));
  std::atomic<bool> queued_ran{false};
  pool.submit(
      [&] {
        queued_ran = true;
        return Outcome::ok();
      },
      record);
  CHECK(pool.stop());
  CHECK_FALSE(pool.stop());  // only once
  CHECK(pool.stopped());
  {
    std::lock_guard<std::mutex> lock(m);
    REQUIRE(answers.size() == 1);
    CHECK(answers[0].kind == Outcome::Kind::retry);
    CHECK(answers[0].reason == "test: relay is shutting down");
  }
  gate.release();
  pool.join();
  CHECK_FALSE(queued_ran);
  std::lock_guard<std::mutex> lock(m);
  REQUIRE(answers.size() == 2);
  CHECK(answers[1].kind == Outcome::Kind::ok);
}

TEST_CASE("a delivery submitted after stop is answered on the caller's thread without running") {
  WorkerPool pool(2, "stopped");
  pool.stop();
  bool ran = false;
  std::thread::id answered_on;
  Outcome got = Outcome::ok();
  pool.submit(
      [&] {
        ran = true;
        return Outcome::ok();
      },
      [&](Outcome o) {
        answered_on = std::this_thread::get_id();
        got = std::move(o);
      });
  CHECK_FALSE(ran);
  CHECK((answered_on == std::this_thread::get_id()));
  CHECK(got.kind == Outcome::Kind::retry);
  CHECK(got.reason == "stopped");
}
