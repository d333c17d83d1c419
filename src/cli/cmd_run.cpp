// `pgrelay run` (the long-lived relay) and `pgrelay reconcile` (one pass for cron).
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <iostream>
#include <thread>

#include "cli/common.hpp"
#include "core/log.hpp"
#include "relay/relay.hpp"
#include "store/admin_queries.hpp"

namespace pgrelay::cli {
namespace {

// What `run` and `reconcile` check before starting: the config can deliver
// (the same checks as check-config, then the handlers are built by the Relay),
// the database is migrated; then the config's warnings are logged.
Config load_runnable_config(const Globals& g, const char* role) {
  Config c = load_config(g, Secrets::required);
  require_deliverable(c);
  open_db(c, role);
  for (const std::string& w : config_warnings(c)) log::warn(w);
  return c;
}

// A signal this soon after the first is the same request, not an impatient
// second one: coreutils `timeout -s TERM` signals the relay and then its
// process group, so it gets SIGTERM twice within microseconds.
constexpr auto kRepeatedSignalGrace = std::chrono::seconds(1);

// Blocks SIGINT/SIGTERM in every thread and turns them into request_stop() on a
// dedicated thread; a second signal (a second or more after the first) exits at
// once (leases then cover the events).
// REQUIRES: block_stop_signals() ran before any thread was started, so that no
// handler thread inherits the default (fatal) disposition.
void block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

class SignalStop {
 public:
  explicit SignalStop(Relay& relay) {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    thread_ = std::thread([this, &relay] {
      int sig = 0;
      sigwait(&set_, &sig);
      if (done_) return;
      log::info("stopping: finishing deliveries in flight", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}});
      relay.request_stop();
      const auto first_at = std::chrono::steady_clock::now();
      for (;;) {
        sigwait(&set_, &sig);
        if (done_) return;
        if (std::chrono::steady_clock::now() - first_at >= kRepeatedSignalGrace) break;
        log::debug("repeated stop signal within a second of the first: still finishing",
                   {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}});
      }
      log::warn("second signal: exiting now; unfinished events are retried when their lease expires");
      _exit(kFailure);
    });
  }
  ~SignalStop() {
    done_ = true;
    pthread_kill(thread_.native_handle(), SIGTERM);
    pthread_kill(thread_.native_handle(), SIGTERM);
    thread_.join();
  }

 private:
  sigset_t set_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace

void add_run(CLI::App& app, Globals& g, Action& action) {
  auto* cmd = app.add_subcommand("run",
                                 "Run the relay until SIGINT/SIGTERM: wake on NOTIFY (or poll), claim due events,\n"
                                 "deliver them to the handlers their type is routed to, record outcomes.\n"
                                 "On a signal it stops claiming, waits up to relay.shutdown_timeout_ms for\n"
                                 "deliveries in flight and gives the rest back; exits 0. Another signal a second\n"
                                 "or more later exits at once (1); one within a second is the same request.");
  cmd->callback([&g, &action] {
    action = [&g] {
      Config c = load_runnable_config(g, "run");
      block_stop_signals();
      Relay relay(c);
      SignalStop stop(relay);
      relay.run();
      return kOk;
    };
  });
}

void add_reconcile(CLI::App& app, Globals& g, Action& action) {
  auto* cmd = app.add_subcommand(
      "reconcile",
      "Run once, for cron: reclaim events whose lease expired, deliver everything due until the\n"
      "backlog is empty or --max-duration-s passes, print a summary.\n"
      "Exit 0 when clean, 3 when dead events exist or pending events are older than --stuck-after-s,\n"
      "1 on failure.");
  auto max_s = std::make_shared<int>(300);
  auto stuck_s = std::make_shared<int>(3600);
  auto json = std::make_shared<bool>(false);
  cmd->add_option("--max-duration-s", *max_s, "Stop delivering after this many seconds")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  cmd->add_option("--stuck-after-s", *stuck_s, "Pending events older than this count as stuck")
      ->check(CLI::Range(1, 365 * 86400))
      ->capture_default_str();
  cmd->add_flag("--json", *json, "Print the summary as JSON");
  cmd->callback([&g, &action, max_s, stuck_s, json] {
    action = [&g, max_s, stuck_s, json] {
      Config c = load_runnable_config(g, "reconcile");
      block_stop_signals();
      Relay relay(c);
      const bool tty = isatty(STDERR_FILENO);
      ReconcileReport r;
      {
        SignalStop stop(relay);
        r = relay.reconcile(std::chrono::seconds(*max_s), [tty](int64_t delivered) {
          if (tty) std::cerr << "\rreconcile: delivered " << delivered << std::flush;
        });
      }
      if (tty) std::cerr << "\r";
      auto conn = open_db(c, "reconcile");
      Status s = read_status(*conn);
      int64_t pending = 0, dead = 0;
      for (const auto& sc : s.counts) {
        if (sc.status == "pending" || sc.status == "processing") pending += sc.count;
        if (sc.status == "dead") dead += sc.count;
      }
      const double oldest = s.oldest_pending_age_s.value_or(0);
      const bool stuck = pending > 0 && oldest > *stuck_s;
      const int code = (dead > 0 || stuck) ? kProblems : kOk;
      if (*json) {
        std::cout << "{\"delivered\":" << r.delivered << ",\"retried\":" << r.retried << ",\"dead_now\":" << r.dead
                  << ",\"dead_total\":" << dead << ",\"pending\":" << pending
                  << ",\"oldest_pending_age_s\":" << std::round(oldest * 1000) / 1000
                  << ",\"lease_expiries\":" << r.lease_expiries
                  << ",\"timed_out\":" << (r.timed_out ? "true" : "false") << ",\"stuck\":" << (stuck ? "true" : "false")
                  << ",\"exit_code\":" << code << "}\n";
      } else {
        std::cout << "reconcile: delivered " << r.delivered << ", retried " << r.retried << ", dead-lettered "
                  << r.dead << ", reclaimed from expired leases " << r.lease_expiries << "\n"
                  << "still pending " << pending << " (oldest " << std::round(oldest) << " s), dead in total " << dead
                  << (r.timed_out ? "; stopped at --max-duration-s" : "") << "\n";
        if (dead > 0) std::cout << "problem: " << dead << " dead events (see: pgrelay dead list)\n";
        if (stuck) std::cout << "problem: pending events older than " << *stuck_s << " s\n";
      }
      return code;
    };
  });
}

}  // namespace pgrelay::cli
