// fork/exec with output to files; no shell involved.
#include "support/child_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace pgrelay::test {
namespace {

std::string temp_path(const char* tag) {
  char buf[] = "/tmp/pgrelay-test-XXXXXX";
  const int fd = ::mkstemp(buf);
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  ::close(fd);
  return std::string(buf) + "." + tag;
}

}  // namespace

ChildProcess::ChildProcess(std::vector<std::string> argv, std::map<std::string, std::string> env)
    : out_path_(temp_path("out")), err_path_(temp_path("err")) {
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    const int out = ::open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int err = ::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int in = ::open("/dev/null", O_RDONLY);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
}

ChildProcess::~ChildProcess() {
  if (!code_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int st;
    ::waitpid(pid_, &st, 0);
  }
  ::unlink(out_path_.c_str());
  ::unlink(err_path_.c_str());
}

void ChildProcess::signal(int sig) {
  if (!code_) ::kill(pid_, sig);
}

std::optional<int> ChildProcess::wait(std::chrono::milliseconds timeout) {
  if (code_) return code_;
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int st = 0;
    const pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return code_;
    }
    if (std::chrono::steady_clock::now() >= until) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string ChildProcess::out() const { return read_file(out_path_); }
std::string ChildProcess::err() const { return read_file(err_path_); }

RunResult run_pgrelay(std::vector<std::string> args, std::map<std::string, std::string> env,
                      const std::string& stdin_text) {
  args.insert(args.begin(), PGRELAY_BIN);
  if (!stdin_text.empty()) {
    // Feed stdin through a file: simplest, and enough for small inputs.
    const std::string in = temp_path("in");
    std::ofstream(in) << stdin_text;
    args.insert(args.begin(), {"sh", "-c", "exec \"$0\" \"$@\" < " + in});
  }
  ChildProcess p(args, env);
  auto code = p.wait(std::chrono::seconds(30));
  if (!code) {
    p.signal(SIGKILL);
    p.wait(std::chrono::seconds(5));
    return {-1, p.out(), p.err() + "\n(timed out)"};
  }
  return {*code, p.out(), p.err()};
}

}  // namespace pgrelay::test
