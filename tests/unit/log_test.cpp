// Log lines: one JSON object per line with time, level and msg, or one text line.
#include <doctest/doctest.h>
#include <rapidjson/document.h>
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "core/log.hpp"

using namespace pgrelay;

namespace {

// Runs `f` with stderr redirected to a file and returns what was written.
template <typename F>
std::string capture_stderr(F f) {
  char path[] = "/tmp/pgrelay-log-test-XXXXXX";
  const int fd = ::mkstemp(path);
  std::fflush(stderr);
  const int saved = ::dup(STDERR_FILENO);
  ::dup2(fd, STDERR_FILENO);
  f();
  std::fflush(stderr);
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  ::close(fd);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  ::unlink(path);
  return ss.str();
}

struct RestoreLog {
  ~RestoreLog() { log::configure(log::Level::error, log::Format::text); }
};

}  // namespace

TEST_CASE("a JSON log line is one object with time, level, msg and typed fields, control characters escaped") {
  RestoreLog restore;
  log::configure(log::Level::info, log::Format::json);
  const std::string out = capture_stderr([] {
    log::warn("delivery failed", {{"event_id", int64_t{42}},
                                  {"type", "orders.paid"},
                                  {"handler", "billing"},
                                  {"attempt", 3},
                                  {"error", "line one\nline \"two\""},
                                  {"ratio", std::nan("")}});
    log::debug("not shown at info");
  });
  REQUIRE(std::count(out.begin(), out.end(), '\n') == 1);
  rapidjson::Document doc;
  doc.Parse(out.c_str());
  REQUIRE_FALSE(doc.HasParseError());
  CHECK(doc["level"].GetString() == std::string("warn"));
  CHECK(doc["msg"].GetString() == std::string("delivery failed"));
  CHECK(std::string(doc["time"].GetString()).size() == 24);  // 2024-05-01T12:00:00.123Z
  CHECK(doc["event_id"].GetInt64() == 42);
  CHECK(doc["attempt"].GetInt() == 3);
  CHECK(doc["handler"].GetString() == std::string("billing"));
  CHECK(doc["error"].GetString() == std::string("line one\nline \"two\""));
  CHECK(doc["ratio"].IsNull());
}

TEST_CASE("a text log line stays on one line when a value holds spaces or newlines") {
  RestoreLog restore;
  log::configure(log::Level::info, log::Format::text);
  const std::string out = capture_stderr([] {
    log::error("relay: database error", {{"error", "could not connect\n\tIs the server running?"}, {"retry_ms", 100}});
  });
  REQUIRE(std::count(out.begin(), out.end(), '\n') == 1);
  CHECK(out.find("error=\"could not connect\\n\\tIs the server running?\"") != std::string::npos);
  CHECK(out.find("retry_ms=100") != std::string::npos);
}

TEST_CASE("a throttle lets one line through per interval and counts the ones it kept silent") {
  log::Throttle t(std::chrono::milliseconds(200));
  CHECK(t.admit() == 1);
  int silent = 0;
  for (int i = 0; i < 196; ++i) silent += t.admit() == 0;
  CHECK(silent == 196);
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  CHECK(t.admit() == 197);  // this one and the 196 before it
  CHECK(t.admit() == 0);
}
