// `command` handler: runs a program with the event JSON on stdin; exit status 0
// is success, anything else a retry with the tail of its output as the error.
// The program runs in its own process group, which is killed on timeout.
// Environment: PGRELAY_EVENT_ID, PGRELAY_EVENT_TYPE, PGRELAY_EVENT_KEY, PGRELAY_ATTEMPT.
#pragma once
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "handlers/handler.hpp"
#include "handlers/worker_pool.hpp"

namespace pgrelay {

class CommandHandler : public Handler {
 public:
  // Runs at most `concurrency` programs at once; each is killed after `timeout_ms`.
  CommandHandler(std::vector<std::string> argv, int64_t timeout_ms, int concurrency);
  ~CommandHandler() override;
  void deliver(std::shared_ptr<const Event> event, Done done) override;
  void shutdown() override;

 private:
  Outcome run(const Event& event);

  std::vector<std::string> argv_;
  int64_t timeout_ms_;
  std::mutex mutex_;         // guards running_ and stopping_
  std::set<pid_t> running_;  // process groups to kill at shutdown
  bool stopping_ = false;    // no program starts any more
  WorkerPool pool_;          // last: its workers are joined before the fields above go
};

}  // namespace pgrelay
