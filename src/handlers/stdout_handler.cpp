// One JSON line per event; a failed write (closed pipe, full disk) is a retry.
#include "handlers/stdout_handler.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>

namespace pgrelay {

void StdoutHandler::deliver(std::shared_ptr<const Event> event, Done done) {
  static std::mutex mutex;
  bool ok;
  {
    std::lock_guard<std::mutex> lock(mutex);
    ok = std::fwrite(event->json.data(), 1, event->json.size(), stdout) == event->json.size() &&
         std::fputc('\n', stdout) != EOF && std::fflush(stdout) == 0;
  }
  done(ok ? Outcome::ok() : Outcome::retry(std::string("stdout: write failed: ") + std::strerror(errno)));
}

}  // namespace pgrelay
