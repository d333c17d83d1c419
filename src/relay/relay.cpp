// The relay loop: claim, dispatch, collect outcomes, ack, heartbeat; reconnect on
// database failures without losing recorded outcomes.
#include "relay/relay.hpp"

#include <unistd.h>

#include <algorithm>
#include <unordered_set>
#include <pqxx/except>
#include <pqxx/transaction>

#include "core/backoff.hpp"
#include "core/payload_check.hpp"
#include "core/log.hpp"
#include "handlers/registry.hpp"
#include "http/admin_server.hpp"
#include "listen/listener.hpp"
#include "listen/wal_waker.hpp"
#include "store/admin_queries.hpp"
#include "store/connection.hpp"

namespace pgrelay {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr auto kReportEvery = std::chrono::seconds(5);
constexpr auto kReconnectMax = milliseconds(5000);
constexpr auto kWalRecheck = milliseconds(10);  // second look after an empty claim on a wal wake

std::string default_relay_id() {
  char host[256] = {0};
  if (::gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "%s", "relay");
  return std::string(host) + ":" + std::to_string(::getpid());
}

const char* kind_word(Outcome::Kind k) {
  switch (k) {
    case Outcome::Kind::ok: return "ok";
    case Outcome::Kind::retry: return "retry";
    case Outcome::Kind::dead: return "dead";
    case Outcome::Kind::defer: return "defer";
  }
  return "?";
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
  const std::string& wake_url = config_.database.listen_url.empty() ? config_.database.url : config_.database.listen_url;
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
    log::warn("another relay of this database uses another wake mode; producers now follow this one, so it is "
              "woken only by its safety poll: run every relay of a database with one wake mode",
              {{"relay", r.id}, {"its_wake", r.wake}, {"wake", config_.relay.wake}});
  }
}

void Relay::open_queue() {
  queue_ = std::make_unique<Queue>(connect(config_.database.url, "claimer"), id_, router_.type_filter());
}

void Relay::run() {
  open_queue();
  // Producers' triggers follow the database's wake mode; bring it in line with ours.
  const std::string before = set_wake_mode(queue_->connection(), config_.relay.wake);
  if (before != config_.relay.wake) {
    log::info("producers' wake mode changed", {{"from", before}, {"to", config_.relay.wake}});
  }
  warn_other_wake_modes();
  if (listener_) listener_->start();
  // Throws on a definite misconfiguration (wal_level, REPLICATION role): fail at start, loudly.
  if (waker_) waker_->start();
  start_admin();
  log::info("relay started", {{"relay", id_}, {"wake", config_.relay.wake},
                              {"handlers", static_cast<int64_t>(slots_.size())}});
  loop(Mode::serve, Clock::time_point::max(), {});
  stop_admin();
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
  const int64_t d0 = stats_.delivered, r0 = stats_.retried, x0 = stats_.dead, l0 = stats_.lease_expiries;
  const auto until = Clock::now() + max_duration;
  loop(Mode::reconcile, until, progress);
  ReconcileReport rep;
  rep.delivered = stats_.delivered - d0;
  rep.retried = stats_.retried - r0;
  rep.dead = stats_.dead - x0;
  rep.lease_expiries = stats_.lease_expiries - l0;
  rep.timed_out = Clock::now() >= until;
  return rep;
}

void Relay::loop(Mode mode, Clock::time_point until, const std::function<void(int64_t)>& progress) {
  const auto& opt = config_.relay;
  const bool in_tx = opt.claim == "transaction";
  const milliseconds ack_delay(opt.ack_delay_ms);
  auto reconnect_wait = milliseconds(100);
  auto next_progress = Clock::now() + std::chrono::seconds(1);
  next_claim_at_ = next_heartbeat_at_ = next_report_at_ = Clock::now();
  claim_wanted_ = true;
  backlog_empty_ = false;

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
      reconnect_wait = milliseconds(100);
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
      } else if (waiting > 0 && (static_cast<int>(waiting) >= opt.batch_size || in_flight_.size() == tx_ready_.size() ||
                                 now - first_ack_at_ >= ack_delay)) {
        flush_acks();
      }
      if (!in_tx && now >= next_heartbeat_at_) heartbeat();
      // Housekeeping shares the claim connection: never while a transactional claim is open.
      const bool connection_free = !queue_->in_transaction();
      if (mode == Mode::serve && connection_free && now >= next_report_at_) report();
      if (mode == Mode::serve && connection_free && now >= next_retention_at_) sweep_retention();
    } catch (const std::exception& e) {
      // Connection trouble (or a failed statement): outcomes not yet recorded stay
      // in acks_, and leases cover the events until we are back.
      log::error("relay: database error, reconnecting", {{"error", e.what()},
                                                          {"retry_ms", static_cast<int64_t>(reconnect_wait.count())}});
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
      reconnect_wait = std::min(reconnect_wait * 2, kReconnectMax);
      continue;
    }
    if (mode == Mode::reconcile && in_flight_.empty() && acks_.empty() && backlog_empty_ && !claim_wanted_) break;

    auto deadline = std::min({next_claim_at_, next_heartbeat_at_, mode == Mode::serve ? next_report_at_ : until});
    for (const auto& [id, f] : in_flight_) deadline = std::min(deadline, f.deadline);
    if (!acks_.empty() || !tx_ready_.empty()) deadline = std::min(deadline, first_ack_at_ + ack_delay);
    if (claim_wanted_ && can_claim()) continue;
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait_until(lock, deadline, [&] { return stop_ || woken_ || !completions_.empty(); });
  }

  // Shutdown: no more claims; give deliveries in flight their chance, then give
  // back what is left without spending an attempt.
  const auto grace = Clock::now() + milliseconds(opt.shutdown_timeout_ms);
  while (in_flight_.size() > tx_ready_.size() && Clock::now() < grace) {
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
  const int limit = std::min(opt.batch_size, opt.max_in_flight - static_cast<int>(in_flight_.size()));
  ClaimResult r;
  if (opt.claim == "transaction") r.events = queue_->claim_in_transaction(limit);
  else r = queue_->claim(limit, milliseconds(opt.lease_ms));
  const auto now = Clock::now();
  stats_.claim_batches++;
  stats_.claimed += static_cast<int64_t>(r.events.size());
  stats_.lease_expiries += r.lease_expiries;
  metrics_.record_claim(static_cast<int>(r.events.size()), r.lease_expiries);
  claim_wanted_ = static_cast<int>(r.events.size()) == limit;
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
    if (auto due = queue_->next_due()) next = std::min(next, *due + milliseconds(1));
    // A walsender is woken by the commit's WAL flush, a moment before the committing
    // backend makes the transaction visible: a wal wake can arrive early. Look once more.
    if (claim_after_wake_ && waker_) next = std::min(next, kWalRecheck);
  }
  claim_after_wake_ = false;
  next_claim_at_ = now + next;
  for (auto& e : r.events) dispatch(std::move(e));
}

bool Relay::adopt(const Event& event) {
  if (auto it = in_flight_.find(event.id); it != in_flight_.end()) {
    auto renewed = std::make_shared<Event>(*it->second.event);
    renewed->claim_token = event.claim_token;
    renewed->attempt = event.attempt;
    it->second.event = std::move(renewed);
    it->second.claimed_at = Clock::now();
  } else if (auto at = ack_index_.find(event.id); at != ack_index_.end()) {
    acks_[at->second].token = event.claim_token;
  } else {
    return false;
  }
  stats_.own_reclaims++;
  metrics_.record_guard(Metrics::Guard::own_reclaim);
  log::warn("claimed an event this relay still holds: its lease ran out before the relay could renew it; "
            "the delivery already under way carries on under the new claim",
            {{"event_id", event.id}, {"type", event.type}});
  return true;
}

void Relay::dispatch(Event event) {
  if (adopt(event)) return;
  auto ev = std::make_shared<const Event>(std::move(event));
  const auto now = Clock::now();
  if (auto decl = declared_.find(ev->type); decl != declared_.end()) {
    if (auto why = check_payload(*decl->second, ev->json)) {
      // It would fail the same way on every attempt: dead at once, no handler runs.
      const std::string reason = "payload does not match event_types." + ev->type + ": " + *why;
      stats_.dead++;
      log::error("event dead-lettered", {{"event_id", ev->id}, {"type", ev->type}, {"error", reason}});
      record(Ack{ev->id, ev->claim_token, Ack::Kind::dead, 0, reason, {}});
      return;
    }
  }
  InFlight f;
  f.generation = next_generation_++;
  f.event = ev;
  f.claimed_at = now;
  f.deadline = Clock::time_point::max();
  for (const auto& name : router_.handlers_for(ev->type)) {
    if (std::find(ev->handlers_done.begin(), ev->handlers_done.end(), name) != ev->handlers_done.end()) continue;
    const Slot& slot = slots_.at(name);
    const bool in_tx = slot.impl->sql_function() != nullptr;
    f.pending.push_back(Pending{&slot, false, Outcome::ok(), in_tx});
    if (!in_tx) {
      f.deadline = std::min(f.deadline, now + milliseconds(slot.timeout_ms));
      ++f.unsettled;
    }
  }
  const int64_t id = ev->id;
  const uint64_t generation = f.generation;
  auto it = in_flight_.emplace(id, std::move(f)).first;
  if (it->second.unsettled == 0) {  // nothing to deliver now: done earlier, or only sql handlers
    if (complete(it->second)) in_flight_.erase(it);
    return;
  }
  for (size_t i = 0; i < it->second.pending.size(); ++i) {
    if (it->second.pending[i].in_tx) continue;
    Handler* h = it->second.pending[i].slot->impl.get();
    h->deliver(ev, [this, id, generation, i](Outcome o) {
      std::lock_guard<std::mutex> lock(mutex_);
      completions_.push_back(Completion{id, generation, i, std::move(o)});
      cv_.notify_all();
    });
  }
}

void Relay::drain_completions() {
  std::vector<Completion> batch;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    batch.swap(completions_);
  }
  for (auto& c : batch) {
    auto it = in_flight_.find(c.id);
    if (it == in_flight_.end() || it->second.generation != c.generation) continue;  // stale: let go or released
    if (c.index >= it->second.pending.size() || it->second.pending[c.index].settled) continue;
    settle(it->second, c.index, std::move(c.outcome));
    if (it->second.unsettled == 0 && complete(it->second)) in_flight_.erase(it);
  }
}

void Relay::settle(InFlight& f, size_t index, Outcome outcome) {
  Pending& p = f.pending[index];
  p.settled = true;
  p.outcome = std::move(outcome);
  --f.unsettled;
  note_delivery(f, p);
  if (!p.outcome.is_ok() && log::enabled(log::Level::warn)) {
    log::warn("delivery failed", {{"event_id", f.event->id}, {"type", f.event->type}, {"handler", p.slot->name},
                                  {"attempt", f.event->attempt}, {"outcome", kind_word(p.outcome.kind)},
                                  {"error", p.outcome.reason}});
  }
}

bool Relay::complete(InFlight& f) {
  for (const Pending& p : f.pending) {
    if (p.in_tx && !p.settled) {
      if (!f.awaiting_tx) {
        f.awaiting_tx = true;
        f.deadline = Clock::time_point::max();
        if (acks_.empty() && tx_ready_.empty()) first_ack_at_ = Clock::now();
        tx_ready_.push_back(f.event->id);
      }
      return false;
    }
  }
  Ack a = outcome_of(f);
  tally(a, *f.event);
  record(std::move(a));
  return true;
}

Ack Relay::outcome_of(const InFlight& f) {
  const Event& e = *f.event;
  Ack a;
  a.id = e.id;
  a.token = e.claim_token;
  a.kind = Ack::Kind::done;
  bool any_retry = false, any_defer = false;
  int64_t delay = 0, defer_delay = 0;
  std::string dead_reason, retry_reason;
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (const Pending& p : f.pending) {
    if (!p.settled) {
      // Never record a delivery that has not answered as a success: give the event back.
      invariant_violated("an outcome was about to be recorded while handler " + p.slot->name + " had not answered",
                         e.id);
      a.kind = Ack::Kind::release;
      a.error = "released: handler " + p.slot->name + " had not answered";
      a.handlers_done.clear();
      return a;
    }
  }
  for (const Pending& p : f.pending) {
    const Outcome& o = p.outcome;
    switch (o.kind) {
      case Outcome::Kind::ok:
        a.handlers_done.push_back(p.slot->name);
        break;
      case Outcome::Kind::dead:
        if (dead_reason.empty()) dead_reason = "handler " + p.slot->name + ": " + o.reason;
        break;
      case Outcome::Kind::retry:
        // A handler that has not succeeded yet has run on every attempt of the
        // event, so the event's attempt number is this handler's attempt number.
        if (e.attempt >= p.slot->retry.max_attempts) {
          if (dead_reason.empty()) {
            dead_reason = "handler " + p.slot->name + ": gave up after " + std::to_string(e.attempt) +
                          " attempts: " + o.reason;
          }
        } else {
          any_retry = true;
          if (retry_reason.empty()) retry_reason = "handler " + p.slot->name + ": " + o.reason;
          delay = std::max<int64_t>(delay, next_delay(p.slot->retry, e.attempt, unit(rng_), o.retry_after).count());
        }
        break;
      case Outcome::Kind::defer:
        any_defer = true;
        if (retry_reason.empty()) retry_reason = "handler " + p.slot->name + ": " + o.reason;
        defer_delay = std::max<int64_t>(defer_delay, o.retry_after ? o.retry_after->count() : 1000);
        break;
    }
  }
  if (!dead_reason.empty()) {
    a.kind = Ack::Kind::dead;
    a.error = dead_reason;
  } else if (any_retry) {
    a.kind = Ack::Kind::retry;
    a.delay_ms = std::max(delay, defer_delay);
    a.error = retry_reason;
  } else if (any_defer) {
    a.kind = Ack::Kind::release;
    a.delay_ms = defer_delay;
    a.error = retry_reason;
  }
  return a;
}

void Relay::tally(const Ack& a, const Event& e) {
  switch (a.kind) {
    case Ack::Kind::done: stats_.delivered++; break;
    case Ack::Kind::retry: stats_.retried++; break;
    case Ack::Kind::release: stats_.released++; break;
    case Ack::Kind::dead:
      stats_.dead++;
      log::error("event dead-lettered", {{"event_id", e.id}, {"type", e.type}, {"attempt", e.attempt},
                                         {"error", a.error}});
      break;
  }
}

void Relay::record(Ack a) {
  if (a.kind == Ack::Kind::retry || a.kind == Ack::Kind::release) {
    next_claim_at_ = std::min(next_claim_at_, Clock::now() + milliseconds(a.delay_ms + 1));
  }
  if (acks_.empty() && tx_ready_.empty()) first_ack_at_ = Clock::now();
  if (!ack_index_.emplace(a.id, acks_.size()).second) {
    invariant_violated("a second outcome was queued for one event", a.id);
    return;
  }
  acks_.push_back(std::move(a));
}

void Relay::expire_timeouts(Clock::time_point now) {
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    InFlight& f = it->second;
    if (f.deadline > now) {
      ++it;
      continue;
    }
    f.deadline = Clock::time_point::max();
    for (size_t i = 0; i < f.pending.size(); ++i) {
      Pending& p = f.pending[i];
      if (p.settled || p.in_tx) continue;
      const auto due = f.claimed_at + milliseconds(p.slot->timeout_ms);
      if (due <= now) {
        stats_.timeouts++;
        settle(f, i, Outcome::retry("timed out after " + std::to_string(p.slot->timeout_ms) + " ms"));
      } else {
        f.deadline = std::min(f.deadline, due);
      }
    }
    if (f.unsettled == 0 && !f.awaiting_tx && complete(f)) {
      it = in_flight_.erase(it);
    } else {
      ++it;
    }
  }
}

bool Relay::can_claim() const {
  if (config_.relay.claim == "transaction") return !queue_ || !queue_->in_transaction();
  return static_cast<int>(in_flight_.size()) < config_.relay.max_in_flight;
}

void Relay::flush_acks() {
  const bool keep_done = config_.relay.done_retention_s > 0;
  AckResult result;
  if (queue_->in_transaction()) {
    result = queue_->finish_transaction(acks_, keep_done);
  } else if (tx_ready_.empty()) {
    result = queue_->ack(acks_, keep_done);
  } else {
    result = flush_with_sql(keep_done);
  }
  report_refused(result);
  acks_.clear();
  ack_index_.clear();
  claim_wanted_ = true;  // finished events may unblock the next event of their key
}

// Runs the sql handlers of the events waiting for them, grouped by handler, and
// records every waiting outcome in the same transaction: a function's effect
// commits exactly when its event's outcome is recorded.
AckResult Relay::flush_with_sql(bool keep_done) {
  std::map<const Slot*, SqlCall> calls;
  std::unordered_set<int64_t> queued;
  std::vector<int64_t> ready;  // tx_ready_ without repeats
  for (int64_t id : tx_ready_) {
    if (!queued.insert(id).second) {
      invariant_violated("an event was queued twice for its sql handlers; it runs once", id);
      continue;
    }
    ready.push_back(id);
    const InFlight& f = in_flight_.at(id);
    for (const Pending& p : f.pending) {
      if (!p.in_tx || p.settled) continue;
      SqlCall& call = calls[p.slot];
      call.handler = p.slot->name;
      call.function = *p.slot->impl->sql_function();
      call.events.push_back(f.event.get());
    }
  }
  std::vector<SqlCall> call_list;
  for (auto& [slot, call] : calls) call_list.push_back(std::move(call));
  std::vector<Ack> decided;
  AckResult result;
  try {
    result = queue_->ack_with_sql(
        call_list,
        [&](const SqlResults& results) {
          for (const auto& [handler, id, error] : results) {
            InFlight& f = in_flight_.at(id);
            for (Pending& p : f.pending) {
              if (p.in_tx && !p.settled && p.slot->name == handler) {
                p.settled = true;
                p.outcome = error.empty() ? Outcome::ok() : Outcome::retry(error);
              }
            }
          }
          decided = acks_;
          for (int64_t id : ready) decided.push_back(outcome_of(in_flight_.at(id)));
          return decided;
        },
        keep_done);
  } catch (...) {
    // The transaction did not commit: the functions' effects are gone, so they run again.
    for (int64_t id : ready) {
      for (Pending& p : in_flight_.at(id).pending) {
        if (p.in_tx) p.settled = false;
      }
    }
    throw;
  }
  for (size_t i = acks_.size(); i < decided.size(); ++i) {
    InFlight& f = in_flight_.at(decided[i].id);
    for (const Pending& p : f.pending) {
      if (!p.in_tx) continue;
      note_delivery(f, p);
      if (!p.outcome.is_ok()) {
        log::warn("delivery failed", {{"event_id", f.event->id}, {"type", f.event->type}, {"handler", p.slot->name},
                                      {"attempt", f.event->attempt}, {"error", p.outcome.reason}});
      }
    }
    tally(decided[i], *f.event);
    in_flight_.erase(decided[i].id);
  }
  tx_ready_.clear();
  return result;
}

void Relay::report_refused(const AckResult& result) {
  if (result.refused.empty()) return;
  stats_.fenced += static_cast<int64_t>(result.refused.size());
  for (const RefusedOutcome& r : result.refused) {
    metrics_.record_guard(Metrics::Guard::outcome_refused);
    std::string now;
    if (r.status.empty()) {
      now = "the event no longer exists";
    } else if (r.status == "processing" && r.lease_owner == id_) {
      now = "this relay claimed it again after its lease ran out";
    } else if (r.status == "processing") {
      now = "relay " + r.lease_owner + " claimed it after this relay's lease ran out";
    } else {
      now = "it is " + r.status + " now";
    }
    log::warn("outcome not recorded: the event's claim is no longer this relay's (" + now + ")",
              {{"event_id", r.id}, {"held_by", r.lease_owner}});
  }
}

void Relay::invariant_violated(const std::string& what, int64_t event_id) {
  stats_.invariant_violations++;
  metrics_.record_guard(Metrics::Guard::invariant_violation);
  log::error("relay bookkeeping error, refused: " + what, {{"event_id", event_id}});
}

void Relay::recover_holdings() {
  if (!acks_.empty() || !tx_ready_.empty()) flush_acks();
  std::vector<std::pair<int64_t, int64_t>> held;
  for (const auto& [id, f] : in_flight_) held.emplace_back(id, f.event->claim_token);
  const auto kept = queue_->extend(held, milliseconds(config_.relay.lease_ms));
  std::unordered_set<int64_t> renewed(kept.begin(), kept.end());
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (renewed.count(it->first)) {
      ++it;
      continue;
    }
    log::warn("let go of an event another relay claimed while this one could not reach the database",
              {{"event_id", it->first}});
    tx_ready_.erase(std::remove(tx_ready_.begin(), tx_ready_.end(), it->first), tx_ready_.end());
    it = in_flight_.erase(it);
  }
  next_heartbeat_at_ = Clock::now() + milliseconds(config_.relay.lease_ms) / 3;
  recovering_ = false;
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

void Relay::release_all() {
  for (auto& [id, f] : in_flight_) {
    Ack a;
    a.id = id;
    a.token = f.event->claim_token;
    a.kind = Ack::Kind::release;
    a.error = "released at shutdown";
    for (const Pending& p : f.pending) {
      if (p.settled && p.outcome.is_ok()) a.handlers_done.push_back(p.slot->name);
    }
    stats_.released++;
    acks_.push_back(std::move(a));
  }
  in_flight_.clear();
  tx_ready_.clear();
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
}

}  // namespace pgrelay
