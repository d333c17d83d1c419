// A real child process (usually the pgrelay binary) with its output captured to
// files, for tests that signal, kill and inspect it.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace pgrelay::test {

class ChildProcess {
 public:
  // Starts `argv` with extra environment variables; stdout and stderr go to temp files.
  ChildProcess(std::vector<std::string> argv, std::map<std::string, std::string> env = {});
  ~ChildProcess();  // SIGKILLs the child if still running

  pid_t pid() const { return pid_; }
  void signal(int sig);
  // Waits for exit; returns the exit code (128+signal if killed), or nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  std::string out() const;
  std::string err() const;

 private:
  pid_t pid_ = -1;
  std::optional<int> code_;
  std::string out_path_, err_path_;
};

// The whole of a file ("" if it cannot be read).
std::string read_file(const std::string& path);

struct RunResult {
  int code;
  std::string out, err;
};
// Runs the pgrelay binary to completion (30 s at most).
RunResult run_pgrelay(std::vector<std::string> args, std::map<std::string, std::string> env = {},
                      const std::string& stdin_text = "");

// Polls `pred` every 20 ms until it holds or `timeout` passes; returns whether it held.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout);

}  // namespace pgrelay::test

#include <thread>
template <typename Pred>
bool pgrelay::test::eventually(Pred pred, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}
