// Spawning, feeding and reaping handler programs, with a deadline on the whole run.
#include "handlers/command_handler.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "core/trace_context.hpp"

extern char** environ;

namespace pgrelay {
namespace {

constexpr size_t kErrorTail = 500;

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
  return "ended abnormally";
}

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

CommandHandler::CommandHandler(std::vector<std::string> argv, int64_t timeout_ms, int concurrency)
    : argv_(std::move(argv)), timeout_ms_(timeout_ms), pool_(concurrency, "command: relay is shutting down") {}

CommandHandler::~CommandHandler() { shutdown(); }

void CommandHandler::deliver(std::shared_ptr<const Event> event, Done done) {
  pool_.submit([this, event = std::move(event)] { return run(*event); }, std::move(done));
}

void CommandHandler::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    for (pid_t pgid : running_) ::kill(-pgid, SIGKILL);
  }
  pool_.stop();
}

Outcome CommandHandler::run(const Event& event) {
  int in_pipe[2], out_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0) return Outcome::retry(std::string("command: pipe: ") + std::strerror(errno));
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    ::close(in_pipe[0]);
    ::close(in_pipe[1]);
    return Outcome::retry(std::string("command: pipe: ") + std::strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);

  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e) {
    // The relay's own trace context (if it has one) is not the event's.
    if (std::strncmp(*e, "PGRELAY_EVENT_", 14) != 0 && std::strncmp(*e, "PGRELAY_ATTEMPT=", 16) != 0 &&
        std::strncmp(*e, "TRACEPARENT=", 12) != 0 && std::strncmp(*e, "TRACESTATE=", 11) != 0) {
      env_store.emplace_back(*e);
    }
  }
  env_store.push_back("PGRELAY_EVENT_ID=" + std::to_string(event.id));
  env_store.push_back("PGRELAY_EVENT_TYPE=" + event.type);
  if (event.key) env_store.push_back("PGRELAY_EVENT_KEY=" + *event.key);
  env_store.push_back("PGRELAY_ATTEMPT=" + std::to_string(event.attempt));
  // The names OpenTelemetry's environment carrier reads, so an instrumented program
  // continues the producer's trace by itself.
  const TraceContext trace = trace_context_of(event.json);
  if (!trace.empty()) env_store.push_back("TRACEPARENT=" + trace.traceparent);
  if (!trace.tracestate.empty()) env_store.push_back("TRACESTATE=" + trace.tracestate);
  std::vector<char*> envp, argv;
  for (auto& s : env_store) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv_;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);

  pid_t pid = -1;
  int rc;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    rc = stopping_ ? ECANCELED : posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
    if (rc == 0) running_.insert(pid);
  }
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close_fd(in_pipe[0]);
  close_fd(out_pipe[1]);
  if (rc != 0) {
    close_fd(in_pipe[1]);
    close_fd(out_pipe[0]);
    return Outcome::retry("command: cannot start " + argv_[0] + ": " + std::strerror(rc));
  }

  // Feed stdin and collect output until both are done or the deadline passes.
  ::fcntl(in_pipe[1], F_SETFL, O_NONBLOCK);
  ::fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
  size_t written = 0;
  std::string tail;
  std::string head;  // the output's first bytes, for the attempt log
  bool timed_out = false;
  while (in_pipe[1] >= 0 || out_pipe[0] >= 0) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd fds[2];
    int n = 0;
    if (in_pipe[1] >= 0) fds[n++] = {in_pipe[1], POLLOUT, 0};
    if (out_pipe[0] >= 0) fds[n++] = {out_pipe[0], POLLIN, 0};
    if (::poll(fds, n, static_cast<int>(std::min<int64_t>(left.count(), 1000))) < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      if (fds[i].fd == in_pipe[1] && fds[i].revents) {
        const ssize_t w = ::write(in_pipe[1], event.json.data() + written, event.json.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        if (w < 0 && errno != EAGAIN) close_fd(in_pipe[1]);  // the program closed stdin: fine
        else if (written == event.json.size()) close_fd(in_pipe[1]);
      } else if (fds[i].fd == out_pipe[0] && fds[i].revents) {
        char buf[4096];
        const ssize_t r = ::read(out_pipe[0], buf, sizeof buf);
        if (r > 0) {
          if (head.size() < Outcome::kMaxResponseHead) {
            head.append(buf, std::min(static_cast<size_t>(r), Outcome::kMaxResponseHead - head.size()));
          }
          tail.append(buf, static_cast<size_t>(r));
          if (tail.size() > 4 * kErrorTail) tail.erase(0, tail.size() - kErrorTail);
        } else if (r == 0 || errno != EAGAIN) {
          close_fd(out_pipe[0]);
        }
      }
    }
  }
  close_fd(in_pipe[1]);
  close_fd(out_pipe[0]);
  if (timed_out) ::kill(-pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    running_.erase(pid);
  }
  if (timed_out) {  // killed here: no exit status of its own to show
    Outcome o = Outcome::retry("command: timed out after " + std::to_string(timeout_ms_) + " ms");
    o.response_head = std::move(head);
    return o;
  }
  // The shell's convention: 128 + the signal for a child a signal ended.
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
  if (code == 0) return Outcome::ok().with_exit(0, std::move(head));
  if (tail.size() > kErrorTail) tail.erase(0, tail.size() - kErrorTail);
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r')) tail.pop_back();
  return Outcome::retry("command: " + describe_status(status) + (tail.empty() ? "" : ": " + tail))
      .with_exit(code, std::move(head));
}

}  // namespace pgrelay
