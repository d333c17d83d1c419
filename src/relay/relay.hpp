// The relay: claims due events, dispatches them to their handlers with bounded
// concurrency and per-handler timeouts, and records outcomes in batches. One
// thread (the caller of run/reconcile) owns the database connection; handlers
// report back from any thread through a completion queue.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/config.hpp"
#include "core/metrics.hpp"
#include "handlers/handler.hpp"
#include "relay/router.hpp"
#include "store/queue.hpp"

namespace pgrelay {

class AdminServer;
class Listener;
class WalWaker;
class WalCapture;

// Counters since start; read from any thread.
struct RelayStats {
  std::atomic<int64_t> claimed{0};
  std::atomic<int64_t> delivered{0};             // events finished (every handler succeeded)
  std::atomic<int64_t> retried{0};               // events rescheduled after a failure
  std::atomic<int64_t> dead{0};                  // events dead-lettered
  std::atomic<int64_t> released{0};              // events given back at shutdown or deferred
  std::atomic<int64_t> fenced{0};                // outcomes refused because the lease was lost
  std::atomic<int64_t> own_reclaims{0};          // events this relay claimed again while still holding them
  std::atomic<int64_t> invariant_violations{0};  // bookkeeping errors caught and refused (should stay 0)
  std::atomic<int64_t> lease_expiries{0};        // events reclaimed after another claim's lease ran out
  std::atomic<int64_t> timeouts{0};              // handler deliveries that hit their timeout
  std::atomic<int64_t> deferred{0};              // deliveries deferred by an open circuit (nothing sent)
  std::atomic<int64_t> claim_batches{0};
  std::atomic<int64_t> claims_with_events{0};  // claim round trips that returned something
};

struct ReconcileReport {
  int64_t delivered = 0, retried = 0, dead = 0, lease_expiries = 0;
  int64_t deferred = 0;    // deliveries not attempted because a circuit was open
  int64_t released = 0;    // given back unfinished at the limit, attempts not spent
  bool timed_out = false;  // the limit came before the work ran out
};

class Relay {
 public:
  // REQUIRES: `config` was validated; handlers it names are built here.
  explicit Relay(Config config);
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // Adds an in-process handler; config routes (or add_route) refer to it by name.
  // REQUIRES: before run()/reconcile().
  void add_handler(const std::string& name, std::unique_ptr<Handler> handler, RetryPolicy retry = {},
                   int64_t timeout_ms = 30000);
  void add_route(const std::string& match, std::vector<std::string> handlers);

  // Runs until request_stop(); then stops claiming, waits up to
  // relay.shutdown_timeout_ms for deliveries in flight, records their outcomes
  // and gives the rest back without spending an attempt.
  // Throws on a database failure it cannot recover from at start-up.
  void run();

  // Delivers everything due until the backlog is empty (or only not-yet-due
  // retries remain) or `max_duration` passes. `progress` is called about once a
  // second with the events delivered so far.
  ReconcileReport reconcile(std::chrono::milliseconds max_duration, const std::function<void(int64_t)>& progress = {});

  // Thread-safe; not async-signal-safe (call it from a signal-waiting thread).
  void request_stop();

  const RelayStats& stats() const { return stats_; }
  const std::string& id() const { return id_; }
  // Whether the wake source (LISTEN connection or replication slot) is up.
  bool listening() const;
  // Seconds since the wake source last heard from the server, -1 if never or none.
  double last_wake_age_s() const;
  // Delivery counters and histograms (served at /metrics); thread-safe.
  const Metrics& metrics() const { return metrics_; }
  // The admin server's port once run() started it (admin.listen set), else 0.
  uint16_t admin_port() const { return admin_port_.load(); }

 private:
  struct Slot {
    std::string name;
    RetryPolicy retry;
    int64_t timeout_ms;
    std::unique_ptr<Handler> impl;
  };
  struct Pending {  // one handler's delivery of one in-flight event
    const Slot* slot;
    bool settled = false;
    Outcome outcome;
    bool in_tx = false;  // a sql handler: runs in the ack transaction, not through deliver()
    std::chrono::steady_clock::time_point settled_at = {};  // when it answered (the attempt log's duration)
  };
  struct InFlight {
    uint64_t generation = 0;  // relay-local, never reused: completions name it, so a stale one is ignored
    std::shared_ptr<const Event> event;
    std::vector<Pending> pending;
    int unsettled = 0;         // deliveries still running (sql handlers not counted)
    bool awaiting_tx = false;  // only sql handlers left: queued in tx_ready_
    bool started = false;      // a run's later event waits, not started, until the one before it finishes
    int64_t next_in_run = 0;   // the key's next event in this relay's run, 0 if none
    std::chrono::steady_clock::time_point claimed_at;
    std::chrono::steady_clock::time_point started_at;
    std::chrono::system_clock::time_point started_wall;  // started_at by the wall clock (the attempt log)
    std::chrono::steady_clock::time_point deadline;      // earliest handler timeout
  };
  struct Completion {
    int64_t id;
    uint64_t generation;
    size_t index;
    Outcome outcome;
  };
  enum class Mode { serve, reconcile };

  void loop(Mode mode, std::chrono::steady_clock::time_point until, const std::function<void(int64_t)>& progress);
  void open_queue();
  void claim_more();
  // Takes in one claimed event; `after` is the event before it in its key's run (0 for
  // a head). Returns whether it is to be started once the whole claim is taken in.
  bool dispatch(Event event, int64_t after);
  void start(InFlight& f);
  // An event's outcome was decided: a finished one (done or dead) lets its run go on,
  // any other stops the run there and gives the rest back to wait behind it.
  void continue_run(int64_t next, Ack::Kind decided);
  // Gives back `next` and the events behind it in its run, none of them started: blocked
  // again behind their key's head, without spending an attempt (pgrelay.promote()).
  void give_back_run(int64_t next);
  // A claim returned an event this relay still holds (its lease ran out while the
  // relay could not renew it): the held deliveries or outcome take the new token.
  bool adopt(const Event& event);
  void settle(InFlight& f, size_t index, Outcome outcome);
  void note_deferral(const std::string& handler, const std::string& reason);
  // Queues the event's outcome for the next ack (and erases it from in_flight_, so
  // `f` is gone after), or for the ack transaction when sql handlers still have to run.
  void complete(InFlight& f);
  // A key to promote with the next ack (its next blocked event may have nothing before it).
  void queue_promotion(const std::string& key);
  // The event's outcome from its handlers' outcomes (no side effects).
  Ack outcome_of(const InFlight& f);
  // The attempt log (attempt_log.cpp): the attempts of `f`'s handlers that answered in
  // this attempt, to go with its outcome `a` (none when attempts.enabled is false).
  std::vector<Attempt> attempts_of(const InFlight& f, const Ack& a) const;
  // The attempt of a check that failed before any handler ran (a payload not matching
  // its declared event type), so a dead event's history says why.
  std::vector<Attempt> check_attempt(const InFlight& f, const std::string& error) const;
  // Counts a decided outcome (and logs a dead letter).
  void tally(const Ack& a, const Event& e);
  AckResult flush_with_sql(const std::vector<Ack>& sending, bool keep_done);
  void report_refused(const AckResult& result);
  // Queues an outcome for the next ack (one whose run goes on unblocks nothing a claim
  // could take: its key's next event is ours already).
  void record(Ack a);
  void drain_completions();
  void expire_timeouts(std::chrono::steady_clock::time_point now);
  bool can_claim() const;  // room for another claim (lease) / no batch open (transaction)
  void flush_acks();
  void heartbeat();
  // After a reconnect: records waiting outcomes first, then renews the lease of
  // everything still held, and lets go of what another relay took meanwhile.
  void recover_holdings();
  void invariant_violated(const std::string& what, int64_t event_id);
  void release_all();
  void report();
  void wake();
  void warn_other_wake_modes();
  // Operations (relay_ops.cpp): the admin server, retention, per-handler metrics.
  void start_admin();
  void stop_admin();
  void sweep_retention();
  // attempt_log.cpp: deletes attempts older than attempts.retention_s for a time budget;
  // returns whether some are left for the next sweep.
  bool trim_attempts();
  // Runs `batch(limit)` (a DELETE of at most limit rows, returning how many) until one
  // deletes less or a time budget is spent; returns the rows deleted, sets *more when
  // the budget ran out first.
  static int64_t delete_in_batches(const std::function<int64_t(int limit)>& batch, bool* more);
  void note_delivery(const InFlight& f, const Pending& p);

  Config config_;
  std::string id_;
  Router router_;
  std::map<std::string, Slot> slots_;
  std::unordered_map<std::string, const EventTypeDecl*> declared_;  // into config_.event_types
  std::unique_ptr<Queue> queue_;
  bool source_told_ = false;             // handlers were given the database's EventSource (first open_queue())
  std::unique_ptr<Listener> listener_;   // wake "notify"
  std::unique_ptr<WalWaker> waker_;      // wake "wal"
  std::unique_ptr<WalCapture> capture_;  // capture "wal": decodes the slot when no other relay does
  RelayStats stats_;
  Metrics metrics_;
  std::unique_ptr<AdminServer> admin_;
  std::atomic<uint16_t> admin_port_{0};
  std::chrono::steady_clock::time_point next_retention_at_{};
  std::mt19937_64 rng_{std::random_device{}()};

  std::unordered_map<int64_t, InFlight> in_flight_;  // by event id; relay thread only
  std::vector<Ack> acks_;                            // outcomes waiting for the next ack round trip
  std::unordered_map<int64_t, size_t> ack_index_;    // event id -> its outcome in acks_
  std::vector<int64_t> tx_ready_;                    // events whose sql handlers run in the next ack
  std::chrono::steady_clock::time_point first_ack_at_;
  uint64_t next_generation_ = 1;
  bool recovering_ = false;  // the queue was reopened: recover_holdings() before the next claim
  struct DeferralLog {
    std::chrono::steady_clock::time_point logged_at;
    int64_t since_logged = 0;
  };
  std::map<std::string, DeferralLog> deferrals_;  // by handler
  int waiting_in_runs_ = 0;                       // in_flight_ entries not started (a run's later events)
  bool stopping_ = false;                         // no new deliveries start (shutdown)
  // When the next retry or lease expiry comes due (after an empty claim); max if none.
  std::chrono::steady_clock::time_point next_due_at_ = std::chrono::steady_clock::time_point::max();
  std::chrono::steady_clock::time_point next_promotion_at_;  // busy keys' promotion, tried again
  std::chrono::steady_clock::time_point next_orphan_sweep_at_;
  bool claim_wanted_ = true;
  // Some outcome queued since the last ack may let a claim find more: a key's head that
  // ended without its run going on, a retry, a release (see record()).
  bool acks_may_unblock_ = false;
  bool backlog_empty_ = false;
  std::chrono::steady_clock::time_point next_claim_at_;
  std::chrono::milliseconds poll_gap_{1};  // wake "poll": current idle gap
  int empty_polls_ = 0;                    // wake "poll": empty checks in a row
  bool claim_after_wake_ = false;          // the next claim answers a wake
  int wal_rechecks_left_ = 0;              // wake "wal": more looks after an empty claim on a wake
  std::chrono::steady_clock::time_point next_heartbeat_at_;
  std::chrono::steady_clock::time_point next_report_at_;

  std::mutex mutex_;  // guards the fields below
  std::condition_variable cv_;
  std::vector<Completion> completions_;
  bool woken_ = false;
  bool stop_ = false;
};

}  // namespace pgrelay
