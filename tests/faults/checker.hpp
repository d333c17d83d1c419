// The fault runs' checker (Jepsen's total-queue idea): compares what the
// producer committed with what the receiver recorded, what the sql and command
// handlers left behind and what the database holds, and says whether pgrelay kept
// its contract.
#pragma once
#include <cstdint>
#include <ostream>
#include <string>
#include <unordered_map>
#include <vector>

#include "faults/effects.hpp"
#include "faults/producer.hpp"

namespace pgrelay::faults {

// One HTTP request the receiver answered (or left hanging).
struct Delivery {
  int64_t seq = 0;
  int64_t event_id = 0;
  int attempt = 0;
  std::string relay;  // the x-relay header each relay's config sets
  std::string key;
  int64_t ms = 0;       // since the run started
  int64_t wall_us = 0;  // when the request arrived, µs since the epoch (the clock PostgreSQL's now() reads)
  int status = 0;       // the status the receiver answered; 0 = left hanging
};

// One injected fault: its window runs from start_ms to the next phase's start.
struct Phase {
  std::string name;
  int64_t start_ms = 0;
  int64_t end_ms = 0;           // when the fault was lifted
  int64_t in_flight_bound = 0;  // events claimed (processing) by the victims just before the fault
  int64_t recovery_ms = -1;     // fault lifted -> every relay of the phase delivers again; -1 never did
  std::string note;             // what the fault script observed, for the report
};

// Everything a run recorded, for check().
struct RunRecord {
  std::unordered_map<int64_t, Produced> produced;  // by sequence number
  std::vector<Delivery> deliveries;                // in the order the receiver answered them
  std::vector<CommandRun> command_runs;
  std::vector<Phase> phases;
  int64_t relay_guard_errors = 0;  // "bookkeeping error" lines in the relays' logs
};

struct PhaseResult {
  Phase phase;
  int64_t produced = 0, lost = 0, duplicates = 0;
};

struct Summary {
  int64_t committed = 0, rolled_back = 0, savepoint_rolled_back = 0, failed = 0, in_doubt = 0;
  int64_t in_doubt_delivered = 0;
  int64_t delivered = 0;   // distinct committed events every routed handler succeeded for
  int64_t deliveries = 0;  // webhook 2xx answers, duplicates included
  int64_t attempts = 0;    // every webhook request, failed ones included
  int64_t lost = 0;        // committed, some routed handler never succeeded
  int64_t lost_webhook = 0, lost_sql = 0, lost_command = 0;  // ... by handler
  int64_t unexpected = 0;                          // delivered but never committed (rolled back, failed, unknown)
  int64_t duplicates = 0;                          // webhook 2xx answers beyond the first per event
  int64_t max_copies = 0;                          // most 2xx answers for one event
  int64_t order_violations = 0;                    // a key's first webhook deliveries out of commit order
  int64_t late_redeliveries = 0;                   // a copy of an event arriving after a later event of its key
  int64_t sql_effects = 0;                         // ledger rows (all committed)
  int64_t sql_duplicates = 0;                      // ledger rows beyond the first per event
  int64_t sql_unexpected = 0;                      // ledger rows of events never committed or not routed to sql
  int64_t sql_order_violations = 0;                // a key's ledger rows out of commit order
  int64_t command_runs = 0, command_failures = 0;  // runs of the flaky command, and those it failed
  int64_t done_without_handlers = 0;               // rows done although a routed handler had not succeeded (yet)
  int64_t commit_order_mismatches = 0;             // a key's ids not in its commit order (the key clock's)
  int64_t cross_producer_handoffs = 0;             // consecutive transactions of a key from different connections
  int64_t overlapping_handoffs = 0;                // ... where the later began before the earlier committed
  int64_t recovery_failures = 0;                   // phases after which a relay never delivered again
  int64_t relay_guard_errors = 0;                  // the relays' own invariant guards firing
  int64_t rows_pending = 0, rows_processing = 0, rows_done = 0, rows_dead = 0, expired_leases = 0;
  int64_t rows_waiting = 0;  // blocked, paused or unrouted: unfinished, out of the due index
  int64_t committed_missing_in_db = 0, uncommitted_in_db = 0;
  double notify_queue_usage = 0;
  std::vector<PhaseResult> phases;
  std::vector<std::string> problems;  // first few examples of each failure
  bool ok() const;
};

Summary check(const RunRecord& run, const std::string& db_url);

void print_summary(const Summary& s, std::ostream& out);

}  // namespace pgrelay::faults
