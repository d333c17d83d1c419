// What the relay holds for each event it claimed, from the claim until its outcome
// is queued for the ack: the deliveries to its handlers, and the run of its key's
// later events that wait for it. Relay thread only (see relay.hpp).
#include <algorithm>

#include "core/log.hpp"
#include "core/trace_context.hpp"
#include "core/payload_check.hpp"
#include "relay/relay.hpp"

namespace pgrelay {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

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
  log::warn(
      "claimed an event this relay still holds: its lease ran out before the relay could renew it; "
      "the delivery already under way carries on under the new claim",
      {{"event_id", event.id}, {"type", event.type}});
  return true;
}

bool Relay::dispatch(Event event, int64_t after) {
  if (adopt(event)) return false;
  InFlight f;
  f.generation = next_generation_++;
  f.event = std::make_shared<const Event>(std::move(event));
  f.claimed_at = Clock::now();
  f.deadline = Clock::time_point::max();
  const int64_t id = f.event->id;
  const int64_t token = f.event->claim_token;
  in_flight_.emplace(id, std::move(f));
  if (after == 0) return true;  // a head: started once the whole claim is taken in
  // It waits behind the event before it, or behind the last of an adopted run.
  int64_t tail = after;
  for (auto t = in_flight_.find(tail); t != in_flight_.end() && t->second.next_in_run != 0; t = in_flight_.find(tail)) {
    tail = t->second.next_in_run;
  }
  if (auto t = in_flight_.find(tail); t != in_flight_.end()) {
    t->second.next_in_run = id;
    ++waiting_in_runs_;
    return false;
  }
  // The event before it was adopted with its outcome already queued (its lease ran out
  // before the ack went out): this one follows that outcome, as if its run had reached it.
  const auto queued = ack_index_.find(after);
  if (queued == ack_index_.end()) {
    invariant_violated("a run's event follows one this relay neither holds nor has an outcome for", id);
    return true;
  }
  const Ack::Kind before = acks_[queued->second].kind;
  if (before == Ack::Kind::done || before == Ack::Kind::dead) return true;
  record(Ack{id, token, Ack::Kind::hold, 0, {}, {}});
  stats_.released++;
  in_flight_.erase(id);
  return false;
}

void Relay::start(InFlight& f) {
  const std::shared_ptr<const Event> ev = f.event;
  const auto now = Clock::now();
  f.started = true;
  f.started_at = now;
  f.started_wall = std::chrono::system_clock::now();
  if (auto decl = declared_.find(ev->type); decl != declared_.end()) {
    if (auto why = check_payload(*decl->second, ev->json)) {
      // It would fail the same way on every attempt: dead at once, no handler runs.
      Ack a{ev->id, ev->claim_token, Ack::Kind::dead, 0, "payload does not match event_types." + ev->type + ": " + *why,
            {}};
      a.attempts = check_attempt(f, a.error);
      const int64_t next = f.next_in_run;
      in_flight_.erase(ev->id);
      tally(a, *ev);
      record(std::move(a));
      continue_run(next, Ack::Kind::dead);
      return;
    }
  }
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
  if (f.unsettled == 0) {  // nothing to deliver now: done earlier, or only sql handlers
    complete(f);
    return;
  }
  const int64_t id = ev->id;
  const uint64_t generation = f.generation;
  // Copied: a handler may answer at once, and nothing here may touch `f` after.
  const std::vector<Pending> pending = f.pending;
  for (size_t i = 0; i < pending.size(); ++i) {
    if (pending[i].in_tx) continue;
    pending[i].slot->impl->deliver(ev, [this, id, generation, i](Outcome o) {
      std::lock_guard<std::mutex> lock(mutex_);
      completions_.push_back(Completion{id, generation, i, std::move(o)});
      cv_.notify_all();
    });
  }
}

void Relay::continue_run(int64_t next, Ack::Kind decided) {
  if (next == 0) return;
  auto it = in_flight_.find(next);
  if (it == in_flight_.end()) return;
  if (stopping_) return;  // shutting down: release_all() gives the rest back
  if (decided == Ack::Kind::done || decided == Ack::Kind::dead) {
    --waiting_in_runs_;
    start(it->second);
    return;
  }
  // The run stops at the event that failed; the rest wait behind it again.
  give_back_run(next);
}

void Relay::give_back_run(int64_t next) {
  for (auto it = in_flight_.find(next); it != in_flight_.end(); it = in_flight_.find(next)) {
    next = it->second.next_in_run;
    record(Ack{it->first, it->second.event->claim_token, Ack::Kind::hold, 0, {}, {}});
    stats_.released++;
    --waiting_in_runs_;
    in_flight_.erase(it);
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
    if (it->second.unsettled == 0) complete(it->second);
  }
}

void Relay::settle(InFlight& f, size_t index, Outcome outcome) {
  Pending& p = f.pending[index];
  p.settled = true;
  p.settled_at = Clock::now();
  p.outcome = std::move(outcome);
  --f.unsettled;
  note_delivery(f, p);
  if (p.outcome.kind == Outcome::Kind::defer) {
    note_deferral(p.slot->name, p.outcome.reason);
  } else if (!p.outcome.is_ok() && log::enabled(log::Level::warn)) {
    log::warn("delivery failed", {{"event_id", f.event->id},
                                  {"type", f.event->type},
                                  {"handler", p.slot->name},
                                  {"attempt", f.event->attempt},
                                  {"max_attempts", p.slot->retry.max_attempts},
                                  {"outcome", kind_word(p.outcome.kind)},
                                  {"error", p.outcome.reason},
                                  log::Field::unless_empty("trace_id", trace_context_of(f.event->json).trace_id())});
  }
}

// A deferral sent nothing (an open circuit): one line when a handler starts deferring,
// then one a minute with the count, instead of one per event per attempt.
void Relay::note_deferral(const std::string& handler, const std::string& reason) {
  constexpr auto kEvery = std::chrono::seconds(60);
  stats_.deferred++;
  DeferralLog& d = deferrals_[handler];
  const auto now = Clock::now();
  ++d.since_logged;
  if (d.logged_at != Clock::time_point{} && now - d.logged_at < kEvery) return;
  log::warn("deliveries deferred without an attempt",
            {{"handler", handler}, {"count", d.since_logged}, {"reason", reason}});
  d.logged_at = now;
  d.since_logged = 0;
}

void Relay::complete(InFlight& f) {
  for (const Pending& p : f.pending) {
    if (p.in_tx && !p.settled) {
      if (!f.awaiting_tx) {
        f.awaiting_tx = true;
        f.deadline = Clock::time_point::max();
        if (acks_.empty() && tx_ready_.empty()) first_ack_at_ = Clock::now();
        tx_ready_.push_back(f.event->id);
      }
      return;
    }
  }
  Ack a = outcome_of(f);
  a.attempts = attempts_of(f, a);
  tally(a, *f.event);
  const int64_t next = f.next_in_run;
  const Ack::Kind kind = a.kind;
  in_flight_.erase(f.event->id);
  a.run_goes_on =
      next != 0 && (kind == Ack::Kind::done || kind == Ack::Kind::dead) && in_flight_.count(next) != 0 && !stopping_;
  record(std::move(a));
  continue_run(next, kind);
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
      case Outcome::Kind::ok: a.handlers_done.push_back(p.slot->name); break;
      case Outcome::Kind::dead:
        if (dead_reason.empty()) dead_reason = "handler " + p.slot->name + ": " + o.reason;
        break;
      case Outcome::Kind::retry:
        // A handler that has not succeeded yet has run on every attempt of the
        // event, so the event's attempt number is this handler's attempt number.
        if (e.attempt >= p.slot->retry.max_attempts) {
          if (dead_reason.empty()) {
            dead_reason =
                "handler " + p.slot->name + ": gave up after " + std::to_string(e.attempt) + " attempts: " + o.reason;
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
    case Ack::Kind::release:
    case Ack::Kind::hold: stats_.released++; break;
    case Ack::Kind::dead:
      stats_.dead++;
      log::error("event dead-lettered", {{"event_id", e.id},
                                         {"type", e.type},
                                         {"attempt", e.attempt},
                                         {"error", a.error},
                                         log::Field::unless_empty("trace_id", trace_context_of(e.json).trace_id())});
      break;
  }
}

void Relay::record(Ack a) {
  if (!a.run_goes_on) acks_may_unblock_ = true;
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
  std::vector<int64_t> answered;  // completed after the scan: completing erases entries
  for (auto& [id, f] : in_flight_) {
    if (f.deadline > now) continue;
    f.deadline = Clock::time_point::max();
    for (size_t i = 0; i < f.pending.size(); ++i) {
      Pending& p = f.pending[i];
      if (p.settled || p.in_tx) continue;
      const auto due = f.started_at + milliseconds(p.slot->timeout_ms);
      if (due <= now) {
        stats_.timeouts++;
        settle(f, i, Outcome::retry("timed out after " + std::to_string(p.slot->timeout_ms) + " ms"));
      } else {
        f.deadline = std::min(f.deadline, due);
      }
    }
    if (f.unsettled == 0 && !f.awaiting_tx) answered.push_back(id);
  }
  for (int64_t id : answered) {
    if (auto it = in_flight_.find(id); it != in_flight_.end()) complete(it->second);
  }
}

bool Relay::can_claim() const {
  if (config_.relay.claim == "transaction") return !queue_ || !queue_->in_transaction();
  return static_cast<int>(in_flight_.size()) < config_.relay.max_in_flight;
}

void Relay::queue_promotion(const std::string& key) {
  if (queue_) queue_->promote_later(key);
}

void Relay::release_all() {
  for (auto& [id, f] : in_flight_) {
    Ack a;
    a.id = id;
    a.token = f.event->claim_token;
    // A run's later events wait behind their key's head again (promoted when it finishes;
    // their key is promoted with this ack in case it already has).
    a.kind = f.started ? Ack::Kind::release : Ack::Kind::hold;
    a.error = f.started ? "released at shutdown" : "";
    if (!f.started && f.event->key) queue_promotion(*f.event->key);
    for (const Pending& p : f.pending) {
      if (p.settled && p.outcome.is_ok()) a.handlers_done.push_back(p.slot->name);
    }
    stats_.released++;
    record(std::move(a));
  }
  in_flight_.clear();
  tx_ready_.clear();
  waiting_in_runs_ = 0;
}

}  // namespace pgrelay
