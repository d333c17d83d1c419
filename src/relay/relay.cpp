// The relay loop: claim, dispatch, collect outcomes, ack, heartbeat; reconnect on
// database failures without losing recorded outcomes. A little over 400 lines: the loop
// and the timers it waits on are one state machine, read best in one place; what it
// holds per event is deliveries.cpp, how outcomes are recorded acks.cpp.
#include "relay/relay.hpp"

#include <unistd.h>

#include <algorithm>
#include <unordered_set>
#include <pqxx/except>
#include <pqxx/transaction>

#include "core/backoff.hpp"
#include "core/payload_check.hpp"
#include "core/reconnect_backoff.hpp"
#include "core/log.hpp"
#include "handlers/registry.hpp"
#include "http/admin_server.hpp"
#include "listen/listener.hpp"
#include "listen/wal_waker.hpp"
#include "capture/wal_capture.hpp"
#include "store/wal_capture_queries.hpp"
#include "store/admin_queries.hpp"
#include "store/connection.hpp"
#include "store/event_source_query.hpp"

namespace pgrelay {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr auto kReportEvery = std::chrono::seconds(5);
constexpr auto kWalRecheck = milliseconds(10);  // first second look after an empty claim on a wal wake
constexpr auto kPromotionRetry = milliseconds(5);
constexpr auto kOrphanSweepEvery = std::chrono::seconds(30);

std::string default_relay_id() {
  char host[256] = {0};
  if (::gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "%s", "relay");
  return std::string(host) + ":" + std::to_string(::getpid());
}

}  // namespace

Relay::Relay(Config config)
    : config_(std::move(config)),
      id_(config_.relay.id.empty() ? default_relay_id() : config_.relay.id),
      router_(config_.routes) {
  for (const auto& h : config_.handlers) {
    slots_[h.name] = Slot{h.name, h.retry, h.timeout_ms, make_handler(h)};
  }
  for (const auto& d : config_.event_types) declared_[d.type] = &d;
  // The wake source is built here, not in run(), so that listening() may be
  // asked from any thread at any time; run() only starts it.
  const std::string& wake_url =
      config_.database.listen_url.empty() ? config_.database.url : config_.database.listen_url;
  const Listener::Callbacks wake_calls{[this] { wake(); }, [this] { wake(); }};
  if (config_.relay.wake == "notify") listener_ = std::make_unique<Listener>(wake_url, wake_calls);
  if (config_.relay.wake == "wal") waker_ = std::make_unique<WalWaker>(wake_url, wake_calls);
}

Relay::~Relay() {
  stop_admin();
  // Handlers may still call back into the relay from their threads: stop and
  // destroy them while the completion queue is alive.
  for (auto& [name, slot] : slots_) slot.impl->shutdown();
  slots_.clear();
  capture_.reset();  // its thread calls wake()
  listener_.reset();
  waker_.reset();
}

void Relay::add_handler(const std::string& name, std::unique_ptr<Handler> handler, RetryPolicy retry,
                        int64_t timeout_ms) {
  slots_[name] = Slot{name, retry, timeout_ms, std::move(handler)};
}

void Relay::add_route(const std::string& match, std::vector<std::string> handlers) {
  for (const auto& h : handlers) {
    if (!slots_.count(h)) throw std::invalid_argument("add_route: handler \"" + h + "\" is not defined");
  }
  config_.routes.push_back(Route{match, std::move(handlers)});
  router_ = Router(config_.routes);
}

bool Relay::listening() const { return (listener_ && listener_->alive()) || (waker_ && waker_->alive()); }

double Relay::last_wake_age_s() const {
  if (listener_) return listener_->last_notification_age_s();
  if (waker_) return waker_->last_notification_age_s();
  return -1;
}

void Relay::request_stop() {
  std::lock_guard<std::mutex> lock(mutex_);
  stop_ = true;
  cv_.notify_all();
}

void Relay::wake() {
  std::lock_guard<std::mutex> lock(mutex_);
  woken_ = true;
  cv_.notify_all();
}

// Producers follow one wake mode per database: a relay still running another one is
// woken only by its safety poll from now on. Said once, at start, for each such relay.
void Relay::warn_other_wake_modes() {
  pqxx::read_transaction tx(queue_->connection());
  for (const auto& r : live_relays(tx)) {
    if (r.id == id_ || r.wake == config_.relay.wake || r.seen_age_s > 3 * kReportEvery.count()) continue;
    log::warn(
        "another relay of this database uses another wake mode; producers now follow this one, so it is "
        "woken only by its safety poll: run every relay of a database with one wake mode",
        {{"relay", r.id}, {"its_wake", r.wake}, {"wake", config_.relay.wake}});
  }
}

void Relay::open_queue() {
  queue_ = std::make_unique<Queue>(connect(config_.database.url, "claimer"), id_, router_.type_filter());
  if (!source_told_) {
    const EventSource source = read_event_source(queue_->connection());
    for (auto& [name, slot] : slots_) slot.impl->set_source(source);
    source_told_ = true;
  }
}

void Relay::run() {
  open_queue();
  // Producers' triggers follow the database's wake mode; bring it in line with ours.
  const std::string before = set_wake_mode(queue_->connection(), config_.relay.wake);
  if (before != config_.relay.wake) {
    log::info("producers' wake mode changed", {{"from", before}, {"to", config_.relay.wake}});
  }
  warn_other_wake_modes();
  // Producers' capture follows the database's mode too; in "wal" every relay offers to
  // decode and the slot lets one at a time. Throws what to do when the server cannot.
  const std::string capture_before = set_capture_mode(queue_->connection(), config_.relay.capture);
  if (capture_before != config_.relay.capture) {
    log::info("producers' capture mode changed", {{"from", capture_before}, {"to", config_.relay.capture}});
  }
  if (config_.relay.capture == "wal") {
    capture_ = std::make_unique<WalCapture>(config_.database.url, [this] { wake(); });
    capture_->start();
  }
  if (listener_) listener_->start();
  // Throws on a definite misconfiguration (wal_level, REPLICATION role): fail at start, loudly.
  if (waker_) waker_->start();
  start_admin();
  log::info("relay started",
            {{"relay", id_}, {"wake", config_.relay.wake}, {"handlers", static_cast<int64_t>(slots_.size())}});
  loop(Mode::serve, Clock::time_point::max(), {});
  stop_admin();
  if (capture_) capture_->stop();
  if (listener_) listener_->stop();
  if (waker_) waker_->stop();
  try {
    if (queue_) forget_relay(queue_->connection(), id_);
  } catch (const std::exception&) {
    // The row ages out of `pgrelay status` by itself.
  }
  log::info("relay stopped", {{"relay", id_}, {"delivered", stats_.delivered.load()}});
}

ReconcileReport Relay::reconcile(milliseconds max_duration, const std::function<void(int64_t)>& progress) {
  open_queue();
  const int64_t d0 = stats_.delivered, r0 = stats_.retried, x0 = stats_.dead, l0 = stats_.lease_expiries,
                f0 = stats_.deferred, g0 = stats_.released;
  const auto until = Clock::now() + max_duration;
  loop(Mode::reconcile, until, progress);
  ReconcileReport rep;
  rep.delivered = stats_.delivered - d0;
  rep.retried = stats_.retried - r0;
  rep.dead = stats_.dead - x0;
  rep.lease_expiries = stats_.lease_expiries - l0;
  rep.deferred = stats_.deferred - f0;
  rep.released = stats_.released - g0;
  rep.timed_out = Clock::now() >= until;
  return rep;
}

void Relay::loop(Mode mode, Clock::time_point until, const std::function<void(int64_t)>& progress) {
  const auto& opt = config_.relay;
  const bool in_tx = opt.claim == "transaction";
  const milliseconds ack_delay(opt.ack_delay_ms);
  ReconnectBackoff reconnect;  // the claim connection, as for the listener and the wal waker
  auto next_progress = Clock::now() + std::chrono::seconds(1);
  next_claim_at_ = next_report_at_ = next_orphan_sweep_at_ = Clock::now();
  // A transactional claim holds row locks, not leases: nothing to renew.
  next_heartbeat_at_ = in_tx ? Clock::time_point::max() : Clock::now();
  next_promotion_at_ = Clock::time_point::max();
  claim_wanted_ = true;
  backlog_empty_ = false;
  stopping_ = false;

  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stop_) break;
      if (woken_) claim_wanted_ = claim_after_wake_ = true;
      woken_ = false;
    }
    auto now = Clock::now();
    if (mode == Mode::reconcile && now >= until) break;
    if (progress && now >= next_progress) {
      progress(stats_.delivered);
      next_progress = now + std::chrono::seconds(1);
    }
    try {
      if (!queue_) {
        open_queue();
        recovering_ = !in_tx && (!in_flight_.empty() || !acks_.empty());
      }
      if (recovering_) recover_holdings();
      reconnect.reset();
      drain_completions();
      expire_timeouts(now);
      if (now >= next_claim_at_) {
        claim_wanted_ = true;
        if (listener_ && mode == Mode::serve) listener_->probe();
        if (waker_ && mode == Mode::serve) waker_->probe();
      }
      if (claim_wanted_ && can_claim()) claim_more();
      drain_completions();
      now = Clock::now();
      const size_t waiting = acks_.size() + tx_ready_.size();
      if (in_tx) {
        // A transactional batch is recorded and committed once all of it is settled.
        if (queue_->in_transaction() && in_flight_.empty()) flush_acks();
      } else if (waiting > 0 &&
                 (static_cast<int>(waiting) >= opt.batch_size ||
                  in_flight_.size() == tx_ready_.size() + waiting_in_runs_ || now - first_ack_at_ >= ack_delay)) {
        flush_acks();
      }
      if (!in_tx && now >= next_heartbeat_at_) heartbeat();
      // Housekeeping shares the claim connection: never while a transactional claim is open.
      const bool connection_free = !queue_->in_transaction();
      if (connection_free && queue_->promotions_waiting() && acks_.empty()) {
        // A key's producer held its lock when its head finished: try it again shortly.
        if (next_promotion_at_ == Clock::time_point::max()) {
          next_promotion_at_ = now + kPromotionRetry;
        } else if (now >= next_promotion_at_) {
          queue_->promote_waiting();
          next_promotion_at_ = Clock::time_point::max();
          claim_wanted_ = true;
        }
      }
      if (connection_free && now >= next_orphan_sweep_at_) {
        queue_->promote_orphans();
        next_orphan_sweep_at_ = now + kOrphanSweepEvery;
      }
      if (mode == Mode::serve && connection_free && now >= next_report_at_) report();
      if (mode == Mode::serve && connection_free && now >= next_retention_at_) sweep_retention();
    } catch (const std::exception& e) {
      // Connection trouble (or a failed statement): outcomes not yet recorded stay
      // in acks_, and leases cover the events until we are back.
      const milliseconds reconnect_wait = reconnect.next();
      log::error("relay: database error, reconnecting",
                 {{"error", e.what()}, {"retry_ms", static_cast<int64_t>(reconnect_wait.count())}});
      if (in_tx) {
        // The claim's transaction is gone and its rows are free again: forget the
        // batch (deliveries still running may be repeated: at least once).
        in_flight_.clear();
        acks_.clear();
        ack_index_.clear();
        tx_ready_.clear();
      }
      queue_.reset();
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait_for(lock, reconnect_wait, [&] { return stop_; });
      continue;
    }
    // A reconcile run ends when nothing is left to do before its limit: it waits for
    // retries and expired leases that come due within it, as a daemon would.
    if (mode == Mode::reconcile && in_flight_.empty() && acks_.empty() && backlog_empty_ && !claim_wanted_ &&
        next_due_at_ >= until && !(queue_ && queue_->promotions_waiting())) {
      break;
    }

    auto deadline = std::min(
        {next_claim_at_, next_heartbeat_at_, next_promotion_at_, mode == Mode::serve ? next_report_at_ : until});
    for (const auto& [id, f] : in_flight_) deadline = std::min(deadline, f.deadline);
    if (!acks_.empty() || !tx_ready_.empty()) deadline = std::min(deadline, first_ack_at_ + ack_delay);
    if (claim_wanted_ && can_claim()) continue;
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait_until(lock, deadline, [&] { return stop_ || woken_ || !completions_.empty(); });
  }

  // Shutdown: no more claims; give deliveries in flight their chance, then give
  // back what is left without spending an attempt.
  stopping_ = true;
  // A reconcile run keeps its limit: what is still running then is given back at once
  // (without spending an attempt) instead of waiting out handler timeouts.
  const auto grace = mode == Mode::reconcile ? Clock::now() : Clock::now() + milliseconds(opt.shutdown_timeout_ms);
  while (in_flight_.size() > tx_ready_.size() + waiting_in_runs_ && Clock::now() < grace) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait_until(lock, std::min(grace, Clock::now() + milliseconds(50)), [&] { return !completions_.empty(); });
    }
    drain_completions();
    expire_timeouts(Clock::now());
  }
  if (!tx_ready_.empty()) {
    try {
      if (!queue_) open_queue();
      flush_acks();  // runs the sql handlers of events whose other handlers finished
    } catch (const std::exception& e) {
      log::error("relay: could not run sql handlers at shutdown; their events are released", {{"error", e.what()}});
      queue_.reset();
    }
  }
  release_all();
  for (int attempt = 0; attempt < 3 && !acks_.empty(); ++attempt) {
    try {
      if (!queue_) open_queue();
      flush_acks();
    } catch (const std::exception& e) {
      log::error("relay: could not record outcomes at shutdown; leases will expire", {{"error", e.what()}});
      queue_.reset();
    }
  }
}

void Relay::claim_more() {
  const auto& opt = config_.relay;
  const int room = opt.max_in_flight - static_cast<int>(in_flight_.size());
  Queue::Limits limits;
  limits.heads = std::min(opt.batch_size, room);
  limits.events = std::min(room, 4 * opt.batch_size);
  limits.run = opt.batch_size;
  const int limit = limits.heads;
  ClaimResult r;
  if (opt.claim == "transaction") r = queue_->claim_in_transaction(limits);
  else r = queue_->claim(limits, milliseconds(opt.lease_ms));
  const auto now = Clock::now();
  stats_.claim_batches++;
  if (!r.events.empty()) stats_.claims_with_events++;
  stats_.claimed += static_cast<int64_t>(r.events.size());
  stats_.lease_expiries += r.lease_expiries;
  metrics_.record_claim(static_cast<int>(r.events.size()), r.lease_expiries);
  // The claim orders events by id, so a key's first one here is its head and the
  // rest are its run, in commit order.
  std::unordered_map<std::string, int64_t> last_of_key;
  std::vector<int64_t> after(r.events.size(), 0);
  int heads = 0;
  for (size_t i = 0; i < r.events.size(); ++i) {
    const Event& e = r.events[i];
    if (!e.key) {
      ++heads;
      continue;
    }
    auto [it, first] = last_of_key.emplace(*e.key, e.id);
    if (first) {
      ++heads;
    } else {
      after[i] = it->second;
      it->second = e.id;
    }
  }
  // A claim that stopped at its scan limit (setting aside a paused or unrouted backlog
  // as it went) goes on at once.
  claim_wanted_ = heads == limit || r.more_due;
  backlog_empty_ = r.events.empty();
  auto next = milliseconds(opt.poll_interval_ms);
  if (opt.wake == "poll") {
    // No notifications: check every millisecond while busy and for the first
    // few empty checks (a steady trickle keeps its latency), then back off to
    // poll_max_ms while idle. An empty claim is one cheap index probe.
    empty_polls_ = r.events.empty() ? empty_polls_ + 1 : 0;
    poll_gap_ = empty_polls_ <= 16 ? milliseconds(1) : std::min(poll_gap_ * 2, milliseconds(opt.poll_max_ms));
    next = poll_gap_;
  }
  if (r.events.empty()) {
    // Nothing claimable now: sleep until the next retry or lease expiry is due.
    next_due_at_ = Clock::time_point::max();
    if (auto due = queue_->next_due()) {
      next = std::min(next, *due + milliseconds(1));
      next_due_at_ = now + *due;
    }
    // A walsender is woken by the commit's WAL flush, a moment before the committing
    // backend makes the transaction visible: a wal wake can arrive early. Look once more.
    // A few looks, further apart each time: a loaded server can take a while.
    if (claim_after_wake_ && waker_) wal_rechecks_left_ = 3;
    if (waker_ && wal_rechecks_left_ > 0) {
      next = std::min(next, kWalRecheck * (1 << (2 * (3 - wal_rechecks_left_))));  // 10, 40, 160 ms
      --wal_rechecks_left_;
    }
  } else {
    wal_rechecks_left_ = 0;
  }
  claim_after_wake_ = false;
  next_claim_at_ = now + next;
  std::vector<int64_t> to_start;
  for (size_t i = 0; i < r.events.size(); ++i) {
    const int64_t id = r.events[i].id;
    if (dispatch(std::move(r.events[i]), after[i])) to_start.push_back(id);
  }
  for (int64_t id : to_start) {
    if (auto it = in_flight_.find(id); it != in_flight_.end() && !it->second.started) start(it->second);
  }
}

void Relay::heartbeat() {
  const auto lease = milliseconds(config_.relay.lease_ms);
  const auto now = Clock::now();
  next_heartbeat_at_ = now + lease / 3;
  std::vector<std::pair<int64_t, int64_t>> held;
  for (const auto& [id, f] : in_flight_) {
    if (now - f.claimed_at >= lease / 3) held.emplace_back(id, f.event->claim_token);
  }
  if (held.empty()) return;
  const int extended = static_cast<int>(queue_->extend(held, lease).size());
  if (extended < static_cast<int>(held.size())) {
    log::warn("lease lost on events still in flight", {{"count", static_cast<int64_t>(held.size()) - extended}});
  }
}

void Relay::report() {
  next_report_at_ = Clock::now() + kReportEvery;
  RelayInfo info;
  info.id = id_;
  info.wake = config_.relay.wake;
  info.listen_alive = listening();
  if (last_wake_age_s() >= 0) {
    info.last_notification_age_s = last_wake_age_s();
  }
  info.in_flight = static_cast<int>(in_flight_.size());
  info.delivered = stats_.delivered;
  report_relay(queue_->connection(), info);
  queue_->announce_routes();
}

}  // namespace pgrelay
