// Recording outcomes: the ack round trip (with the sql handlers' transaction when
// some wait for it), what a refusal means, and taking stock after a reconnect.
#include <map>
#include <unordered_set>

#include "core/log.hpp"
#include "core/trace_context.hpp"
#include "relay/relay.hpp"

namespace pgrelay {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

}  // namespace

void Relay::flush_acks() {
  const bool keep_done = config_.relay.done_retention_s > 0;
  // Taken out first: outcomes decided while these are recorded (a run going on after
  // its sql event) queue up for the next round trip.
  std::vector<Ack> sending;
  sending.swap(acks_);
  ack_index_.clear();
  // A transaction's end frees its whole batch, and sql handlers' events are not tracked
  // by record(): both always claim again.
  const bool may_unblock = acks_may_unblock_ || queue_->in_transaction() || !tx_ready_.empty();
  acks_may_unblock_ = false;
  AckResult result;
  try {
    if (queue_->in_transaction()) {
      result = queue_->finish_transaction(sending, keep_done);
    } else if (tx_ready_.empty()) {
      result = queue_->ack(sending, keep_done);
    } else {
      result = flush_with_sql(sending, keep_done);
    }
  } catch (...) {
    // Not recorded: everything goes again with the next round trip.
    for (Ack& a : acks_) sending.push_back(std::move(a));
    acks_.swap(sending);
    for (size_t i = 0; i < acks_.size(); ++i) ack_index_.emplace(acks_[i].id, i);
    acks_may_unblock_ = acks_may_unblock_ || may_unblock;
    throw;
  }
  report_refused(result);
  // Finished events may unblock the next event of their key. Not when every one was
  // followed by its run's next event, already ours: the claim would find nothing, and
  // its round trip would hold the run up (with a 1 ms handler, one per ack, every
  // other event).
  if (may_unblock) claim_wanted_ = true;
}

// Runs the sql handlers of the events waiting for them, grouped by handler, and
// records every waiting outcome in the same transaction: a function's effect
// commits exactly when its event's outcome is recorded.
AckResult Relay::flush_with_sql(const std::vector<Ack>& sending, bool keep_done) {
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
                p.settled_at = Clock::now();
                p.outcome = error.empty() ? Outcome::ok() : Outcome::retry(error);
              }
            }
          }
          decided = sending;
          for (int64_t id : ready) {
            const InFlight& f = in_flight_.at(id);
            decided.push_back(outcome_of(f));
            decided.back().attempts = attempts_of(f, decided.back());
          }
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
  tx_ready_.clear();
  for (size_t i = sending.size(); i < decided.size(); ++i) {
    InFlight& f = in_flight_.at(decided[i].id);
    for (const Pending& p : f.pending) {
      if (!p.in_tx) continue;
      note_delivery(f, p);
      if (!p.outcome.is_ok()) {
        log::warn("delivery failed",
                  {{"event_id", f.event->id},
                   {"type", f.event->type},
                   {"handler", p.slot->name},
                   {"attempt", f.event->attempt},
                   {"error", p.outcome.reason},
                   log::Field::unless_empty("trace_id", trace_context_of(f.event->json).trace_id())});
      }
    }
    tally(decided[i], *f.event);
    const int64_t next = f.next_in_run;
    in_flight_.erase(decided[i].id);
    continue_run(next, decided[i].kind);
  }
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
  std::vector<int64_t> runs_cut;  // what waited behind an event let go
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (renewed.count(it->first)) {
      ++it;
      continue;
    }
    log::warn("let go of an event another relay claimed while this one could not reach the database",
              {{"event_id", it->first}});
    if (!it->second.started) --waiting_in_runs_;
    if (it->second.next_in_run != 0) runs_cut.push_back(it->second.next_in_run);
    tx_ready_.erase(std::remove(tx_ready_.begin(), tx_ready_.end(), it->first), tx_ready_.end());
    it = in_flight_.erase(it);
  }
  // The rest of such a run is still this relay's but has nothing left to wait behind
  // here: it is given back, blocked behind its key's head (pgrelay.promote()).
  for (int64_t next : runs_cut) give_back_run(next);
  next_heartbeat_at_ = Clock::now() + milliseconds(config_.relay.lease_ms) / 3;
  recovering_ = false;
}

}  // namespace pgrelay
