// The relay's side of the attempt log (pgrelay.attempt_batches, migration 0008): what each handler
// answered in an attempt, carried with the event's outcome into the ack round trip, and
// the retention sweep that deletes old attempts. Relay thread only (see relay.hpp).
#include <pqxx/except>

#include "core/log.hpp"
#include "core/text_head.hpp"
#include "relay/relay.hpp"
#include "store/ops_queries.hpp"

namespace pgrelay {
namespace {

constexpr size_t kErrorBytes = 2000;  // as much of an error as db_events.last_error keeps

int64_t wall_us(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

}  // namespace

std::vector<Attempt> Relay::attempts_of(const InFlight& f, const Ack& a) const {
  std::vector<Attempt> out;
  // A release or hold gives the attempt back: it did not count, and its number comes again.
  if (!config_.attempts.enabled || a.kind == Ack::Kind::release || a.kind == Ack::Kind::hold) return out;
  const size_t head_bytes = static_cast<size_t>(config_.attempts.response_head_bytes);
  for (const Pending& p : f.pending) {
    const Outcome& o = p.outcome;
    if (!p.settled || o.kind == Outcome::Kind::defer) continue;  // a deferral sent nothing
    Attempt t;
    t.handler = p.slot->name;
    t.attempt = f.event->attempt;
    if (p.in_tx) {  // ran inside the ack transaction: started when it answered, its time is the ack's
      t.started_at_us = wall_us(f.started_wall + (p.settled_at - f.started_at));
    } else {
      t.started_at_us = wall_us(f.started_wall);
      t.duration_ms = std::chrono::duration<double, std::milli>(p.settled_at - f.started_at).count();
    }
    switch (o.kind) {
      case Outcome::Kind::ok: t.outcome = "ok"; break;
      case Outcome::Kind::dead: t.outcome = "dead"; break;
      default:  // retry: the last one allowed is where the event died
        t.outcome = f.event->attempt >= p.slot->retry.max_attempts ? "dead" : "retry";
        break;
    }
    t.http_status = o.http_status;
    t.exit_code = o.exit_code;
    if (!o.is_ok()) t.error = text_head(o.reason, kErrorBytes);
    if (head_bytes > 0) t.response_head = text_head(o.response_head, head_bytes);
    out.push_back(std::move(t));
  }
  return out;
}

std::vector<Attempt> Relay::check_attempt(const InFlight& f, const std::string& error) const {
  if (!config_.attempts.enabled) return {};
  Attempt t;
  t.handler = "(payload check)";  // not a handler name (names match [A-Za-z0-9_][A-Za-z0-9_.:-]*)
  t.attempt = f.event->attempt;
  t.started_at_us = wall_us(f.started_wall);
  t.outcome = "dead";
  t.error = text_head(error, kErrorBytes);
  return {std::move(t)};
}

bool Relay::trim_attempts() {
  if (!config_.attempts.enabled) return false;  // a relay that logs none leaves the log to those that do
  bool more = false;
  const int64_t deleted = delete_in_batches(
      [&](int limit) { return delete_old_attempts(queue_->connection(), config_.attempts.retention_s, limit); }, &more);
  if (deleted > 0) {
    log::debug("retention: deleted old attempt batches",
               {{"batches", deleted}, {"retention_s", config_.attempts.retention_s}});
  }
  return more;
}

}  // namespace pgrelay
