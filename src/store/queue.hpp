// The relay's side of pgrelay.db_events: claim due events under a fenced lease,
// record outcomes in batches, extend and release leases. One round trip each.
// Owns one connection; not thread-safe: use it from one thread.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <tuple>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <pqxx/connection>
#include <pqxx/transaction>

#include "core/event.hpp"

namespace pgrelay {

// Which event types a relay claims: exact names and "prefix." prefixes; all if `everything`.
struct TypeFilter {
  bool everything = false;
  std::vector<std::string> exact;
  std::vector<std::string> prefixes;  // "orders." for the route "orders.*"
};

// One delivery attempt of an event to a handler, for the attempt log (pgrelay.attempts).
struct Attempt {
  std::string handler;
  int attempt = 0;
  int64_t started_at_us = 0;  // wall clock, microseconds since the epoch
  double duration_ms = 0;
  std::string outcome = "ok";  // ok | retry | dead
  int http_status = 0;         // 0: no HTTP response
  std::optional<int> exit_code = {};
  std::string error = {};
  std::string response_head = {};
};

// An outcome to record, fenced by the claim token it was claimed with.
//   done     every handler succeeded       retry  pending again after delay_ms
//   dead     given up, kept as a dead letter
//   release  pending again after delay_ms, the attempt given back (shutdown, open circuit)
//   hold     blocked again behind its key's head, the attempt given back: the rest of a
//            key's run after an event of it failed
struct Ack {
  enum class Kind { done, retry, dead, release, hold };
  int64_t id = 0;
  int64_t token = 0;
  Kind kind = Kind::done;
  int64_t delay_ms = 0;                    // retry/release: next attempt after this long
  std::string error;                       // retry/dead: kept in last_error
  std::vector<std::string> handlers_done;  // handlers that succeeded in this attempt
  std::vector<Attempt> attempts = {};      // logged with the outcome (empty: the attempt log is off)
  // done/dead: its key's next event is the relay's already, the run going on, so the
  // ack promotes nothing for this key.
  bool run_goes_on = false;
};

// One sql handler's function called for some events, in the ack transaction.
struct SqlCall {
  std::string handler;
  std::string function;
  std::vector<const Event*> events;
};

// Per (handler, event id): empty on success, else the reason it failed.
using SqlResults = std::vector<std::tuple<std::string, int64_t, std::string>>;

// An outcome the database did not take because its claim token no longer
// matched, and where the event is now, so the refusal can say what happened.
struct RefusedOutcome {
  int64_t id = 0;
  std::string status;       // the event's status now; empty when the row is gone
  std::string lease_owner;  // who holds it now, if processing
};

struct AckResult {
  int applied = 0;
  std::vector<RefusedOutcome> refused;
};

struct ClaimResult {
  std::vector<Event> events;
  int lease_expiries = 0;  // events reclaimed because another claim's lease ran out
  bool more_due = false;   // the claim stopped at its scan limit with due events unread
};

class Queue {
 public:
  // REQUIRES: `conn` is open and migrated.
  Queue(std::unique_ptr<pqxx::connection> conn, std::string owner, TypeFilter filter);

  // How much one claim takes: up to `heads` keys (or unkeyed events) in due order, and
  // behind each keyed head up to `run` events of its key in id order, `events` in all.
  struct Limits {
    int heads = 256;
    int events = 256;
    int run = 256;
  };

  // Claims due events with a fresh token and a lease of `lease` (pgrelay.claim()).
  ClaimResult claim(const Limits& limits, std::chrono::milliseconds lease);

  // Records outcomes. An outcome whose token no longer matches (the lease ran
  // out and the event was claimed again) is not applied; the result names those.
  // Finished events are deleted, or kept as 'done' when `keep_done` is set. The acks'
  // attempts go into the attempt log in the same statement, refused outcomes' too
  // (those attempts happened). The next
  // event of each key whose head finished is made pending (pgrelay.promote()).
  AckResult ack(const std::vector<Ack>& acks, bool keep_done);

  // Calls each sql handler's function for its events, then records the outcomes
  // that `decide` derives from the results, all in one transaction: a function's
  // effect commits exactly when its success is recorded. A call that fails as a
  // whole (say, the function does not exist) yields that error for all its events.
  AckResult ack_with_sql(const std::vector<SqlCall>& calls,
                         const std::function<std::vector<Ack>(const SqlResults&)>& decide, bool keep_done);

  // Transactional claim (relay.claim = "transaction"): locks the claimed events
  // in a transaction left open, without writing them; claim_token stays 0.
  // finish_transaction() records their outcomes and commits. If the relay dies,
  // the rows are free at once. Returns no events (and no open transaction) when
  // nothing is due; more_due as for claim(). No lease, so no lease_expiries.
  ClaimResult claim_in_transaction(const Limits& limits);
  AckResult finish_transaction(const std::vector<Ack>& acks, bool keep_done);
  bool in_transaction() const { return tx_ != nullptr; }

  // Extends the lease of events still held with these tokens; returns the ids extended.
  std::vector<int64_t> extend(const std::vector<std::pair<int64_t, int64_t>>& id_tokens,
                              std::chrono::milliseconds lease);

  // Time until the earliest not-yet-due unfinished event (a retry or a lease
  // expiry) becomes due; nullopt when there is none.
  std::optional<std::chrono::milliseconds> next_due();

  // Keys whose promotion found a producer of the key still in its transaction; the
  // next ack retries them, or promote_waiting() when nothing else is to be recorded.
  bool promotions_waiting() const { return !busy_keys_.empty(); }
  void promote_later(const std::string& key) { busy_keys_.push_back(key); }
  void promote_waiting();
  // Promotes keys left with blocked events and nothing before them (a relay died with
  // promotions to do); visits every key with blocked events.
  void promote_orphans();

  // Publishes what this relay routes (pgrelay.relays) and takes back the events set
  // aside as unrouted that it routes. REQUIRES: the relay's row exists (report_relay).
  void announce_routes();

  pqxx::connection& connection() { return *conn_; }

 private:
  AckResult ack_in(pqxx::transaction_base& tx, const std::vector<Ack>& acks, bool keep_done, bool locked);
  std::string ack_document(const std::vector<Ack>& acks) const;
  // The attempts of `acks` as pgrelay.record_attempt_batches() takes them: split by
  // event-id bucket (id >> 10), a bigint[] of buckets, a bigint[] of each one's latest
  // start (µs), and a JSON array of their attempt arrays. `docs` is empty when there are none.
  struct AttemptBatches {
    std::string buckets, untils, docs;
  };
  static AttemptBatches attempt_batches(const std::vector<Ack>& acks);

  std::unique_ptr<pqxx::connection> conn_;
  std::unique_ptr<pqxx::work> tx_;  // open while a transactional claim is delivered
  std::string owner_;
  std::string exact_literal_;  // text[] literals of the relay's routes
  std::string prefix_literal_;
  bool everything_ = false;
  std::vector<std::string> busy_keys_;
};

// A PostgreSQL text[] literal of `items`, every element quoted.
std::string text_array_literal(const std::vector<std::string>& items);

}  // namespace pgrelay
