// The thread a wake source runs its Boost.Asio loop on. start() posts the first
// step (connecting) and runs the loop on a new thread; stop() posts the last step
// (dropping the connection, cancelling timers), stops the loop and joins, so the
// wake source's state is only ever touched from that thread.
// Thread-safety: start() once, then stop() from any thread but the loop's own.
#pragma once
#include <functional>
#include <thread>

#include <boost/asio/io_context.hpp>

namespace pgrelay {

class LoopThread {
 public:
  explicit LoopThread(boost::asio::io_context& io) : io_(io) {}
  ~LoopThread() { stop({}); }
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  // REQUIRES: not started yet.
  void start(std::function<void()> first);
  // Runs `last` on the loop, then ends it and joins. Does nothing if never started
  // or already stopped.
  void stop(std::function<void()> last);

 private:
  boost::asio::io_context& io_;
  std::thread thread_;
};

}  // namespace pgrelay
