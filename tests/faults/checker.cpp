// The fault runs' checker: lost, unexpected, duplicated, per-key order, final
// row states, per fault window.
#include "faults/checker.hpp"

#include <algorithm>
#include <iomanip>
#include <map>
#include <pqxx/pqxx>
#include <set>
#include <tuple>
#include <unordered_set>

namespace pgrelay::faults {

bool Summary::ok() const {
  return lost == 0 && unexpected == 0 && order_violations == 0 && rows_pending == 0 && rows_processing == 0 &&
         expired_leases == 0 && committed_missing_in_db == 0 && uncommitted_in_db == 0 && committed > 0 &&
         commit_order_mismatches == 0 && recovery_failures == 0;
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

// A row of pgrelay.db_events, as the checker needs it.
struct Row {
  int64_t id = 0;
  std::string key, status, type;
};

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
  std::unordered_map<int64_t, int64_t> copies;        // by seq
  std::map<std::string, int64_t> last_first_id;       // per key: the newest event delivered so far
  for (const auto& d : run.deliveries) {
    s.attempts++;
    if (d.status < 200 || d.status >= 300) continue;
    s.deliveries++;
    const int64_t n = ++copies[d.seq];
    if (n == 1) {
      auto it = last_first_id.find(d.key);
      if (it != last_first_id.end() && d.event_id < it->second) {
        s.order_violations++;
        note(s.problems, seen, "order", "key " + d.key + ": event " + std::to_string(d.event_id) + " (seq " +
                                            std::to_string(d.seq) + ") first delivered after event " +
                                            std::to_string(it->second));
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
      "pg_notification_queue_usage() FROM pgrelay.db_events");
  s.rows_pending = counts[0].as<int64_t>();
  s.rows_processing = counts[1].as<int64_t>();
  s.rows_done = counts[2].as<int64_t>();
  s.rows_dead = counts[3].as<int64_t>();
  s.expired_leases = counts[4].as<int64_t>();
  s.notify_queue_usage = counts[5].as<double>();
  std::unordered_map<int64_t, Row> row_of_seq;
  std::unordered_map<int64_t, int64_t> seq_of_id;
  for (const auto& r : tx.exec("SELECT id, coalesce(key, ''), status, event_type, "
                               "coalesce(payload->>'seq', payload->'new'->>'seq')::bigint FROM pgrelay.db_events")) {
    Row row{r[0].as<int64_t>(), r[1].as<std::string>(), r[2].as<std::string>(), r[3].as<std::string>()};
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

  std::unordered_set<int64_t> lost;
  for (const auto& [seq, p] : produced) {
    if (p.fate != Fate::committed) continue;
    if (copies.count(seq)) {
      s.delivered++;
    } else {
      s.lost++;
      lost.insert(seq);
      note(s.problems, seen, "lost", "seq " + std::to_string(seq) + " committed, never delivered");
    }
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
        note(s.problems, seen, "commit order", "key " + key + ": event " + std::to_string(id_b) + " (seq " +
                                                   std::to_string(seq_b) + ") committed after event " +
                                                   std::to_string(id_a) + " (seq " + std::to_string(seq_a) + ")");
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
        << (r.phase.recovery_ms < 0 ? std::string("NEVER") : std::to_string(r.phase.recovery_ms)) << "\n";
  }
  out << "\ntotal: committed " << s.committed << ", rolled back " << s.rolled_back << " (+" << s.savepoint_rolled_back
      << " to a savepoint), failed before commit " << s.failed << ", in doubt " << s.in_doubt << " ("
      << s.in_doubt_delivered << " of them delivered)\n"
      << "delivered " << s.delivered << " distinct / " << s.deliveries << " 2xx answers / " << s.attempts
      << " requests; LOST " << s.lost << ", UNEXPECTED " << s.unexpected << ", duplicates " << s.duplicates
      << " (max copies of one event " << s.max_copies << ")\n"
      << "per-key order: " << s.order_violations << " violations of first delivery, " << s.late_redeliveries
      << " late re-deliveries of an older event; ids against the key clock: " << s.commit_order_mismatches
      << " out of commit order; " << s.cross_producer_handoffs << " hand-offs of a key between producers, "
      << s.overlapping_handoffs << " of them while both were open\n"
      << "relays: " << s.recovery_failures << " faults never recovered from\n"
      << "rows: pending " << s.rows_pending << ", processing " << s.rows_processing << ", done " << s.rows_done
      << ", dead " << s.rows_dead << ", expired leases " << s.expired_leases << "; committed missing in table "
      << s.committed_missing_in_db << ", uncommitted in table " << s.uncommitted_in_db
      << "; notification queue usage " << s.notify_queue_usage << "\n";
  for (const auto& p : s.problems) out << "  problem: " << p << "\n";
  out << (s.ok() ? "RESULT: PASS\n" : "RESULT: FAIL\n");
}

}  // namespace pgrelay::faults
