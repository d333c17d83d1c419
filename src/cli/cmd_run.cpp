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
#include "store/reconcile_queries.hpp"

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

namespace {

// "90", "90s", "5m", "1h": seconds. Throws UsageError naming the value otherwise.
int parse_duration_s(const std::string& text) {
  size_t used = 0;
  long long n = -1;
  try {
    n = std::stoll(text, &used);
  } catch (const std::exception&) {
  }
  const std::string unit = n >= 0 ? text.substr(used) : "";
  const long long scale = unit.empty() || unit == "s" ? 1 : unit == "m" ? 60 : unit == "h" ? 3600 : 0;
  if (n < 1 || scale == 0 || n * scale > 86400) {
    throw UsageError("--max-duration " + text +
                     ": give seconds, or a number with s, m or h (1s to 24h), e.g. 30s, 5m, 1h");
  }
  return static_cast<int>(n * scale);
}

}  // namespace

void add_reconcile(CLI::App& app, Globals& g, Action& action) {
  auto* cmd =
      app.add_subcommand("reconcile",
                         "Run once, for cron: reclaim events whose lease expired, deliver everything due, and wait\n"
                         "for retries and expired leases that come due before --max-duration; then print a summary.\n"
                         "Exit codes (the summary's last line says which and why):\n"
                         "  0  every routed event due within the run was delivered and nothing failed during it\n"
                         "  3  something is dead, failing (a retry scheduled after a failure), stuck past\n"
                         "     --stuck-after-s, or a circuit breaker is open\n"
                         "  4  stopped at --max-duration with due work left (nothing failed)\n"
                         "  1  could not run (database unreachable, ...); 2 bad usage or config");
  auto max_text = std::make_shared<std::string>("300s");
  auto max_s = std::make_shared<int>(0);
  auto stuck_s = std::make_shared<int>(3600);
  auto json = std::make_shared<bool>(false);
  cmd->add_option("--max-duration", *max_text, "Time limit: seconds, or 30s, 5m, 1h (at most 24h)")
      ->capture_default_str();
  cmd->add_option("--max-duration-s", *max_s, "The same in seconds (kept for older crontabs)")
      ->check(CLI::Range(1, 86400));
  cmd->add_option("--stuck-after-s", *stuck_s, "Unfinished events older than this count as stuck")
      ->check(CLI::Range(1, 365 * 86400))
      ->capture_default_str();
  cmd->add_flag("--json", *json, "Print the summary as JSON");
  cmd->callback([&g, &action, max_text, max_s, stuck_s, json] {
    action = [&g, max_text, max_s, stuck_s, json] {
      const int limit_s = *max_s > 0 ? *max_s : parse_duration_s(*max_text);
      Config c = load_runnable_config(g, "reconcile");
      block_stop_signals();
      auto conn = open_db(c, "reconcile");
      const int64_t due_at_start = due_now(*conn);
      Relay relay(c);
      const bool tty = isatty(STDERR_FILENO);
      const auto t0 = std::chrono::steady_clock::now();
      ReconcileReport r;
      {
        SignalStop stop(relay);
        r = relay.reconcile(std::chrono::seconds(limit_s), [&](int64_t delivered) {
          if (!tty) return;
          const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          std::cerr << "\rreconcile: delivered " << delivered << " of " << due_at_start << " due at start, "
                    << std::lround(delivered / std::max(el, 0.001)) << "/s, " << std::max(0L, std::lround(limit_s - el))
                    << " s left   " << std::flush;
        });
      }
      if (tty) std::cerr << "\r" << std::string(70, ' ') << "\r";
      Status s = read_status(*conn);
      int64_t pending = 0, dead = 0;
      for (const auto& sc : s.counts) {
        if (sc.status != "done" && sc.status != "dead") pending += sc.count;  // every unfinished state
        if (sc.status == "dead") dead += sc.count;
      }
      const auto groups = problem_groups(*conn);
      int64_t failing = 0;
      for (const auto& p : groups) failing += p.status == "failing" ? p.count : 0;
      const int64_t due_left = due_now(*conn);
      const double oldest = s.oldest_pending_age_s.value_or(0);
      const bool stuck = pending > 0 && oldest > *stuck_s;
      std::vector<std::string> why;
      if (dead > 0) why.push_back(std::to_string(dead) + " dead (pgrelay dead list)");
      if (failing > 0) why.push_back(std::to_string(failing) + " failing, retries scheduled");
      if (stuck) why.push_back("unfinished events older than " + std::to_string(*stuck_s) + " s");
      if (r.deferred > 0)
        why.push_back("a circuit breaker is open (" + std::to_string(r.deferred) + " deliveries deferred)");
      int code = kOk;
      std::string reason = "clean: everything due was delivered";
      if (!why.empty()) {
        code = kProblems;
        reason.clear();
        for (const auto& w : why) reason += (reason.empty() ? "" : "; ") + w;
      } else if (r.timed_out && due_left > 0) {
        code = kTimeLimit;
        reason = "stopped at the time limit (" + std::to_string(limit_s) + " s) with " + std::to_string(due_left) +
                 " due events left";
      }
      if (*json) {
        std::cout << "{\"delivered\":" << r.delivered << ",\"retried\":" << r.retried << ",\"dead_now\":" << r.dead
                  << ",\"dead_total\":" << dead << ",\"failing\":" << failing << ",\"pending\":" << pending
                  << ",\"due_left\":" << due_left << ",\"deferred\":" << r.deferred << ",\"released\":" << r.released
                  << ",\"oldest_pending_age_s\":" << std::round(oldest * 1000) / 1000
                  << ",\"lease_expiries\":" << r.lease_expiries << ",\"timed_out\":" << (r.timed_out ? "true" : "false")
                  << ",\"stuck\":" << (stuck ? "true" : "false") << ",\"problems\":[";
        for (size_t i = 0; i < groups.size(); ++i) {
          std::cout << (i ? "," : "") << "{\"status\":\"" << groups[i].status
                    << "\",\"type\":" << log::json_quoted(groups[i].type)
                    << ",\"handler\":" << log::json_quoted(groups[i].handler) << ",\"count\":" << groups[i].count
                    << ",\"last_error\":" << log::json_quoted(groups[i].last_error.substr(0, 300)) << "}";
        }
        std::cout << "],\"exit_code\":" << code << ",\"reason\":" << log::json_quoted(reason) << "}\n";
      } else {
        std::cout << "reconcile: delivered " << r.delivered << ", retried " << r.retried << ", dead-lettered " << r.dead
                  << ", reclaimed from expired leases " << r.lease_expiries << "\n"
                  << "still pending " << pending << " (oldest " << std::round(oldest) << " s), dead in total " << dead
                  << (r.timed_out ? "; stopped at the time limit" : "") << "\n";
        for (const auto& p : groups) {
          std::cout << "  " << p.status << " " << p.count << " " << p.type << " via " << p.handler << ": "
                    << p.last_error.substr(0, 200) << "\n";
        }
        if (dead > 0) std::cout << "problem: " << dead << " dead events (see: pgrelay dead list)\n";
        if (stuck) std::cout << "problem: pending events older than " << *stuck_s << " s\n";
        std::cout << "result: exit " << code << ": " << reason << "\n";
      }
      return code;
    };
  });
}

}  // namespace pgrelay::cli
