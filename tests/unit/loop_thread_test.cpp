// The loop thread the wake sources run on (listen/loop_thread.hpp).
#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "listen/loop_thread.hpp"

using namespace pgrelay;

TEST_CASE("the loop thread runs the first step and later work on its own thread, and the last step before joining") {
  boost::asio::io_context io;
  LoopThread loop(io);
  std::thread::id first_on, last_on;
  std::atomic<int> posted{0};
  loop.start([&] { first_on = std::this_thread::get_id(); });
  for (int i = 0; i < 10; ++i) boost::asio::post(io, [&] { ++posted; });
  loop.stop([&] { last_on = std::this_thread::get_id(); });
  CHECK((first_on != std::thread::id{}));
  CHECK((first_on != std::this_thread::get_id()));
  CHECK((last_on == first_on));
  CHECK(posted == 10);  // posted before the last step, so run before it
  CHECK(io.stopped());
}

TEST_CASE("stopping a loop thread that never started, or twice, does nothing") {
  boost::asio::io_context io;
  LoopThread loop(io);
  bool ran = false;
  loop.stop([&] { ran = true; });
  CHECK_FALSE(ran);
  loop.start([] {});
  int lasts = 0;
  loop.stop([&] { ++lasts; });
  loop.stop([&] { ++lasts; });
  CHECK(lasts == 1);
}
