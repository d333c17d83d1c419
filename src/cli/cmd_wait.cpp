// `pgrelay wait ID... [--timeout]`: a synchronous answer to an asynchronous event, for a
// control plane: 0 when every event is delivered, 3 as soon as one is dead (or was purged
// dead), 4 when the timeout comes first.
#include <chrono>
#include <iostream>
#include <map>
#include <thread>

#include "cli/common.hpp"
#include "cli/event_filters.hpp"
#include "store/receipt_queries.hpp"

namespace pgrelay::cli {
namespace {

// "removed": no row and no attempt left to tell (the attempt log off or past its
// retention); finished events are deleted at once by default, so it counts as delivered.
bool delivered(const std::string& s) { return s == "done" || s == "removed"; }
bool failed(const std::string& s) { return s == "dead" || s == "purged"; }

}  // namespace

void add_wait(CLI::App& app, Globals& g, Action& action) {
  auto* cmd =
      app.add_subcommand("wait",
                         "Wait until events are delivered: exit 0 when every one is, 3 as soon as one is dead (or was\n"
                         "purged dead), 4 at the timeout. Reads pgrelay.event_state() about every --interval-ms.");
  auto ids = std::make_shared<std::vector<int64_t>>();
  auto timeout_s = std::make_shared<double>(30);
  auto interval_ms = std::make_shared<int64_t>(100);
  cmd->add_option("ids", *ids, "Event ids")->required()->check(event_id_validator());
  cmd->add_option("--timeout", *timeout_s, "Give up after this many seconds")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  cmd->add_option("--interval-ms", *interval_ms, "How often to look")
      ->check(CLI::Range(int64_t{10}, int64_t{60000}))
      ->capture_default_str();
  cmd->callback([&g, &action, ids, timeout_s, interval_ms] {
    action = [&g, ids, timeout_s, interval_ms] {
      Config c = load_config(g);
      auto conn = open_db(c, "wait");
      const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(*timeout_s);
      std::vector<int64_t> left = *ids;
      for (;;) {
        std::vector<int64_t> still;
        for (const auto& [id, status] : event_statuses(*conn, left)) {
          if (failed(status)) {
            std::cout << "wait: event " << id << " is " << status << " (pgrelay events show " << id << ")\n";
            return kProblems;
          }
          if (status == "removed") {
            // Said, not hidden: a purged dead letter looks the same once nothing records it.
            std::cerr << "wait: event " << id
                      << " is no longer held and the attempt log has no record of it (attempts.enabled false, or "
                         "past attempts.retention_s); counted as delivered\n";
          }
          if (!delivered(status)) still.push_back(id);
        }
        if (still.empty()) {
          std::cout << "wait: " << ids->size() << (ids->size() == 1 ? " event" : " events") << " delivered\n";
          return kOk;
        }
        left.swap(still);
        if (std::chrono::steady_clock::now() >= until) {
          std::cout << "wait: timed out with " << left.size() << " not delivered (first: " << left.front() << ")\n";
          return kTimeLimit;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(*interval_ms));
      }
    };
  });
}

}  // namespace pgrelay::cli
