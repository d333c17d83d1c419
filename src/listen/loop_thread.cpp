// Starting and stopping a wake source's loop thread (listen/loop_thread.hpp).
#include "listen/loop_thread.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

namespace pgrelay {

void LoopThread::start(std::function<void()> first) {
  boost::asio::post(io_, std::move(first));
  thread_ = std::thread([this] {
    auto guard = boost::asio::make_work_guard(io_);
    io_.run();
  });
}

void LoopThread::stop(std::function<void()> last) {
  if (!thread_.joinable()) return;
  boost::asio::post(io_, [this, last = std::move(last)] {
    if (last) last();
    io_.stop();
  });
  thread_.join();
}

}  // namespace pgrelay
