// The fault runs' checker: lost, unexpected, duplicated, per-key order, every
// routed handler's success, exactly-once sql effects, final row states, per
// fault window.
#include "faults/checker.hpp"

#include <algorithm>
#include <iomanip>
#include <map>
#include <pqxx/pqxx>
#include <set>
#include <tuple>
#include <unordered_set>

#include "faults/routes.hpp"

namespace pgrelay::faults {

bool Summary::ok() const {
  return lost == 0 && unexpected == 0 && order_violations == 0 && rows_pending == 0 && rows_processing == 0 &&
         rows_waiting == 0 && expired_leases == 0 && committed_missing_in_db == 0 && uncommitted_in_db == 0 &&
         committed > 0 && sql_duplicates == 0 && sql_unexpected == 0 && sql_order_violations == 0 &&
         done_without_handlers == 0 && commit_order_mismatches == 0 && recovery_failures == 0 &&
         relay_guard_errors == 0;
}

namespace {

void note(std::vector<std::string>& problems, std::map<std::string, int>& seen, const std::string& kind,
          const std::string& what) {
  if (seen[kind]++ < 5) problems.push_back(kind + ": " + what);
}

bool delivered_fate(Fate f) { return f == Fate::committed || f == Fate::in_doubt; }

std::string fate_word(const std::unordered_map<int64_t, Produced>& produced, int64_t seq) {
  auto f = produced.find(seq);
  return f == produced.end() ? std::string("unknown") : std::string(1, static_cast<char>(f->second.fate));
}

const RoutedType* routing_named(const std::string& type) {
  for (const RoutedType& r : kRoutedTypes) {
    if (type == r.type) return &r;
  }
  return nullptr;
}

// A row of pgrelay.db_events, as the checker needs it.
struct Row {
  int64_t id = 0;
  std::string key, status, type;
  int64_t finished_us = 0;  // finished_at: the start of the ack transaction that finished it
};

// The earliest success of a handler per event id, µs since the epoch.
void earliest(std::unordered_map<int64_t, int64_t>& first_us, int64_t id, int64_t us) {
  auto [it, fresh] = first_us.emplace(id, us);
  if (!fresh) it->second = std::min(it->second, us);
}

}  // namespace

Summary check(const RunRecord& run, const std::string& db_url) {
  Summary s;
  std::map<std::string, int> seen;
  const auto& produced = run.produced;
  for (const auto& [seq, p] : produced) {
    switch (p.fate) {
      case Fate::committed: s.committed++; break;
      case Fate::rolled_back: s.rolled_back++; break;
      case Fate::savepoint: s.savepoint_rolled_back++; break;
      case Fate::failed: s.failed++; break;
      case Fate::in_doubt: s.in_doubt++; break;
    }
  }

  // Webhook deliveries in the order the receiver answered them. A key's commit
  // order is its id order: every producer of a key takes the key lock
  // (pgrelay.lock_key, in emit() and in the per-row capture of fault_items) before
  // its insert allocates the id and holds it until COMMIT, so of two events of one
  // key the later-committed one got the higher id. The key clock checks that
  // premise below rather than trusting it.
  std::unordered_map<int64_t, int64_t> copies;      // by seq
  std::unordered_map<int64_t, int64_t> hook_ok_us;  // by event id: the first 2xx request's arrival
  std::map<std::string, int64_t> last_first_id;     // per key: the newest event delivered so far
  for (const auto& d : run.deliveries) {
    s.attempts++;
    if (d.status < 200 || d.status >= 300) continue;
    s.deliveries++;
    earliest(hook_ok_us, d.event_id, d.wall_us);
    const int64_t n = ++copies[d.seq];
    if (n == 1) {
      auto it = last_first_id.find(d.key);
      if (it != last_first_id.end() && d.event_id < it->second) {
        s.order_violations++;
        note(s.problems, seen, "order",
             "key " + d.key + ": event " + std::to_string(d.event_id) + " (seq " + std::to_string(d.seq) +
                 ") first delivered after event " + std::to_string(it->second));
      }
      if (it == last_first_id.end() || d.event_id > it->second) last_first_id[d.key] = d.event_id;
    } else {
      s.duplicates++;
      if (last_first_id[d.key] > d.event_id) s.late_redeliveries++;
    }
    s.max_copies = std::max(s.max_copies, n);
    auto f = produced.find(d.seq);
    if (n == 1 && (f == produced.end() || !delivered_fate(f->second.fate))) {
      s.unexpected++;
      note(s.problems, seen, "unexpected",
           "seq " + std::to_string(d.seq) + " delivered but its fate is " + fate_word(produced, d.seq));
    }
    if (n == 1 && f != produced.end() && f->second.fate == Fate::in_doubt) s.in_doubt_delivered++;
  }

  // What the database holds.
  pqxx::connection c{db_url};
  pqxx::work tx{c};
  const auto counts = tx.exec1(
      "SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'processing'), "
      "count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE status = 'dead'), "
      "count(*) FILTER (WHERE status = 'processing' AND next_attempt_at < now()), "
      "pg_notification_queue_usage(), count(*) FILTER (WHERE status IN ('blocked', 'paused', 'unrouted')) "
      "FROM pgrelay.db_events");
  s.rows_pending = counts[0].as<int64_t>();
  s.rows_processing = counts[1].as<int64_t>();
  s.rows_done = counts[2].as<int64_t>();
  s.rows_dead = counts[3].as<int64_t>();
  s.expired_leases = counts[4].as<int64_t>();
  s.notify_queue_usage = counts[5].as<double>();
  s.rows_waiting = counts[6].as<int64_t>();
  std::unordered_map<int64_t, Row> row_of_seq;
  std::unordered_map<int64_t, int64_t> seq_of_id;
  for (const auto& r : tx.exec("SELECT id, coalesce(key, ''), status, event_type, "
                               "coalesce(payload->>'seq', payload->'new'->>'seq')::bigint, "
                               "coalesce((extract(epoch FROM finished_at) * 1000000)::bigint, 0) "
                               "FROM pgrelay.db_events")) {
    Row row{r[0].as<int64_t>(), r[1].as<std::string>(), r[2].as<std::string>(), r[3].as<std::string>(),
            r[5].as<int64_t>()};
    if (r[4].is_null()) continue;
    seq_of_id[row.id] = r[4].as<int64_t>();
    row_of_seq[r[4].as<int64_t>()] = std::move(row);
  }
  for (const auto& [seq, p] : produced) {
    if (p.fate == Fate::committed && !row_of_seq.count(seq)) {
      s.committed_missing_in_db++;
      note(s.problems, seen, "missing row", "seq " + std::to_string(seq));
    }
  }
  for (const auto& [seq, row] : row_of_seq) {
    auto f = produced.find(seq);
    if (f == produced.end() || !delivered_fate(f->second.fate)) {
      s.uncommitted_in_db++;
      note(s.problems, seen, "uncommitted row", "seq " + std::to_string(seq));
    }
  }

  // The sql handler's ledger: every row committed with its ack transaction, so
  // more than one row for an event is an effect that happened twice.
  std::unordered_map<int64_t, int64_t> sql_rows;       // by event id
  std::unordered_map<int64_t, std::string> first_sql;  // by event id: attempt and transaction of its first row
  std::map<std::string, int64_t> last_sql_id;          // per key: the newest event with an effect so far
  for (const auto& r : tx.exec("SELECT event_id, seq, attempt, txid::text FROM fault.ledger ORDER BY n")) {
    s.sql_effects++;
    const int64_t id = r[0].as<int64_t>();
    const int64_t seq = r[1].is_null() ? 0 : r[1].as<int64_t>();
    const std::string where = "attempt " + r[2].as<std::string>("?") + ", transaction " + r[3].as<std::string>();
    if (++sql_rows[id] > 1) {
      s.sql_duplicates++;
      note(s.problems, seen, "duplicate sql effect",
           "event " + std::to_string(id) + " (seq " + std::to_string(seq) + "): row " + std::to_string(sql_rows[id]) +
               " at " + where + "; the first at " + first_sql[id]);
      continue;
    }
    first_sql[id] = where;
    auto f = produced.find(seq);
    if (f == produced.end() || !delivered_fate(f->second.fate) || !routing_of(seq).sql) {
      s.sql_unexpected++;
      note(s.problems, seen, "unexpected sql effect",
           "event " + std::to_string(id) + " (seq " + std::to_string(seq) + ", fate " + fate_word(produced, seq) + ")");
    }
    // Of one key, an event is claimable only once the previous one is finished,
    // so its effect is inserted after the previous one's committed.
    auto row = row_of_seq.find(seq);
    if (row == row_of_seq.end() || row->second.key.empty()) continue;
    auto last = last_sql_id.find(row->second.key);
    if (last != last_sql_id.end() && id < last->second) {
      s.sql_order_violations++;
      note(s.problems, seen, "sql order",
           "key " + row->second.key + ": event " + std::to_string(id) + " took effect after event " +
               std::to_string(last->second));
    }
    if (last == last_sql_id.end() || id > last->second) last_sql_id[row->second.key] = id;
  }

  std::unordered_map<int64_t, int64_t> command_ok_us;  // by event id: the first successful run's end
  for (const auto& r : run.command_runs) {
    s.command_runs++;
    if (r.exit_code == 0) {
      earliest(command_ok_us, r.event_id, r.ended_us);
    } else {
      s.command_failures++;
    }
  }

  // Every routed handler succeeded for every committed event ...
  std::unordered_set<int64_t> lost;
  for (const auto& [seq, p] : produced) {
    if (p.fate != Fate::committed) continue;
    const RoutedType& route = routing_of(seq);
    auto row = row_of_seq.find(seq);
    const int64_t id = row == row_of_seq.end() ? 0 : row->second.id;
    bool ok = true;
    if (route.webhook && !copies.count(seq)) {
      s.lost_webhook++;
      ok = false;
      note(s.problems, seen, "lost", "seq " + std::to_string(seq) + " committed, its webhook never answered 2xx");
    }
    if (route.sql && !(id && sql_rows.count(id))) {
      s.lost_sql++;
      ok = false;
      note(s.problems, seen, "lost", "seq " + std::to_string(seq) + " committed, no sql effect");
    }
    if (route.command && !(id && command_ok_us.count(id))) {
      s.lost_command++;
      ok = false;
      note(s.problems, seen, "lost", "seq " + std::to_string(seq) + " committed, its command never succeeded");
    }
    if (ok) {
      s.delivered++;
    } else {
      s.lost++;
      lost.insert(seq);
    }
  }
  // ... and, for every event the database calls done (in doubt or not), before
  // it was done: a webhook's 2xx request arrived, and a command's successful run
  // ended, before the ack transaction that finished the event began (one machine,
  // one clock; the relay hears of a success only after it). The sql handler's
  // effect commits in that transaction, so it only has to exist.
  for (const auto& [seq, row] : row_of_seq) {
    if (row.status != "done") continue;
    const RoutedType* route = routing_named(row.type);
    if (!route) continue;
    std::string missing;
    auto before_done = [&](const std::unordered_map<int64_t, int64_t>& first_us, const char* name) {
      auto it = first_us.find(row.id);
      if (it == first_us.end()) {
        missing += std::string(missing.empty() ? "" : ", ") + name + " never succeeded";
      } else if (it->second >= row.finished_us) {
        missing += std::string(missing.empty() ? "" : ", ") + name + " first succeeded " +
                   std::to_string(it->second - row.finished_us) + " µs after";
      }
    };
    if (route->webhook) before_done(hook_ok_us, "webhook");
    if (route->command) before_done(command_ok_us, "command");
    if (route->sql && !sql_rows.count(row.id)) missing += std::string(missing.empty() ? "" : ", ") + "no sql effect";
    if (missing.empty()) continue;
    s.done_without_handlers++;
    note(s.problems, seen, "done without its handlers",
         "event " + std::to_string(row.id) + " (seq " + std::to_string(seq) + ", " + row.type + "): " + missing);
  }

  // The key clock: ordering a key's transactions by their counter gives their
  // commit order as the producers saw it; the ids must follow it. Also counts how
  // often consecutive transactions of a key came from different connections, and
  // how often the later one was already open when the earlier committed (it
  // waited for the key lock): the per-key order checks above mean something
  // across producers only when these are not zero.
  std::map<std::string, std::vector<std::tuple<int64_t, int64_t, int64_t>>> by_key;  // (clock, seq, id)
  for (const auto& [seq, p] : produced) {
    auto row = row_of_seq.find(seq);
    if (p.key_clock <= 0 || row == row_of_seq.end()) continue;
    by_key[p.key].emplace_back(p.key_clock, seq, row->second.id);
  }
  for (auto& [key, events] : by_key) {
    std::sort(events.begin(), events.end());
    for (size_t i = 1; i < events.size(); ++i) {
      const auto& [clock_a, seq_a, id_a] = events[i - 1];
      const auto& [clock_b, seq_b, id_b] = events[i];
      if (id_b < id_a) {
        s.commit_order_mismatches++;
        note(s.problems, seen, "commit order",
             "key " + key + ": event " + std::to_string(id_b) + " (seq " + std::to_string(seq_b) +
                 ") committed after event " + std::to_string(id_a) + " (seq " + std::to_string(seq_a) + ")");
      }
      if (clock_a == clock_b) continue;  // one transaction
      const Produced& a = produced.at(seq_a);
      const Produced& b = produced.at(seq_b);
      if (a.producer == b.producer) continue;
      s.cross_producer_handoffs++;
      if (b.began_ms < a.ms) s.overlapping_handoffs++;
    }
  }

  for (const auto& p : run.phases) {
    if (p.recovery_ms >= 0) continue;
    s.recovery_failures++;
    note(s.problems, seen, "no recovery", p.name + ": a relay never delivered again after the fault was lifted");
  }
  s.relay_guard_errors = run.relay_guard_errors;
  if (s.relay_guard_errors > 0) {
    note(s.problems, seen, "relay guard",
         std::to_string(s.relay_guard_errors) + " 'bookkeeping error' lines in the relays' logs (r1.log, r2.log)");
  }

  // Per fault window.
  for (size_t i = 0; i < run.phases.size(); ++i) {
    PhaseResult r;
    r.phase = run.phases[i];
    const int64_t from = run.phases[i].start_ms;
    const int64_t to = i + 1 < run.phases.size() ? run.phases[i + 1].start_ms : INT64_MAX;
    for (const auto& [seq, p] : produced) {
      if (p.fate != Fate::committed || p.ms < from || p.ms >= to) continue;
      r.produced++;
      if (lost.count(seq)) r.lost++;
    }
    std::unordered_map<int64_t, int> seen_copy;
    for (const auto& d : run.deliveries) {
      if (d.status < 200 || d.status >= 300) continue;
      if (++seen_copy[d.seq] > 1 && d.ms >= from && d.ms < to) r.duplicates++;
    }
    s.phases.push_back(r);
  }
  return s;
}

void print_summary(const Summary& s, std::ostream& out) {
  out << "\nfault                 produced  lost  dups  in-flight bound  recovery ms\n";
  for (const auto& r : s.phases) {
    out << std::left << std::setw(22) << r.phase.name << std::right << std::setw(8) << r.produced << std::setw(6)
        << r.lost << std::setw(6) << r.duplicates << std::setw(17) << r.phase.in_flight_bound << std::setw(13)
        << (r.phase.recovery_ms < 0 ? std::string("NEVER") : std::to_string(r.phase.recovery_ms))
        << (r.phase.note.empty() ? "" : "  (" + r.phase.note + ")") << "\n";
  }
  out << "\ntotal: committed " << s.committed << ", rolled back " << s.rolled_back << " (+" << s.savepoint_rolled_back
      << " to a savepoint), failed before commit " << s.failed << ", in doubt " << s.in_doubt << " ("
      << s.in_doubt_delivered << " of them delivered)\n"
      << "delivered " << s.delivered << " with every routed handler; LOST " << s.lost << " (webhook " << s.lost_webhook
      << ", sql " << s.lost_sql << ", command " << s.lost_command << "), UNEXPECTED " << s.unexpected << "\n"
      << "webhook: " << s.deliveries << " 2xx answers / " << s.attempts << " requests; duplicates " << s.duplicates
      << " (max copies of one event " << s.max_copies << ")\n"
      << "sql ledger: " << s.sql_effects << " effects; DUPLICATE SQL EFFECTS " << s.sql_duplicates << ", unexpected "
      << s.sql_unexpected << ", out of key order " << s.sql_order_violations << "\n"
      << "command: " << s.command_runs << " runs, " << s.command_failures << " failed on purpose\n"
      << "EVENTS DONE WITHOUT ALL THEIR HANDLERS " << s.done_without_handlers << "\n"
      << "per-key order: " << s.order_violations << " violations of first delivery, " << s.late_redeliveries
      << " late re-deliveries of an older event; ids against the key clock: " << s.commit_order_mismatches
      << " out of commit order; " << s.cross_producer_handoffs << " hand-offs of a key between producers, "
      << s.overlapping_handoffs << " of them while both were open\n"
      << "relays: " << s.recovery_failures << " faults never recovered from, " << s.relay_guard_errors
      << " bookkeeping errors logged\n"
      << "rows: pending " << s.rows_pending << ", processing " << s.rows_processing << ", waiting " << s.rows_waiting
      << ", done " << s.rows_done << ", dead " << s.rows_dead << ", expired leases " << s.expired_leases
      << "; committed missing in table " << s.committed_missing_in_db << ", uncommitted in table "
      << s.uncommitted_in_db << "; notification queue usage " << s.notify_queue_usage << "\n";
  for (const auto& p : s.problems) out << "  problem: " << p << "\n";
  out << (s.ok() ? "RESULT: PASS\n" : "RESULT: FAIL\n");
}

}  // namespace pgrelay::faults
