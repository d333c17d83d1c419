// The fault runs' checker: lost, unexpected, duplicated, per-key order, final
// row states, per fault window.
#include "faults/checker.hpp"

#include <algorithm>
#include <iomanip>
#include <map>
#include <pqxx/pqxx>
#include <set>
#include <unordered_set>

namespace pgrelay::faults {

bool Summary::ok() const {
  return lost == 0 && unexpected == 0 && order_violations == 0 && rows_pending == 0 && rows_processing == 0 &&
         expired_leases == 0 && committed_missing_in_db == 0 && uncommitted_in_db == 0 && committed > 0;
}

namespace {

void note(std::vector<std::string>& problems, std::map<std::string, int>& seen, const std::string& kind,
          const std::string& what) {
  if (seen[kind]++ < 5) problems.push_back(kind + ": " + what);
}

}  // namespace

Summary check(const std::unordered_map<int64_t, Fate>& fates, const std::unordered_map<int64_t, int64_t>& commit_ms,
              const std::vector<Delivery>& deliveries, const std::vector<Phase>& phases,
              const std::string& db_url) {
  Summary s;
  std::map<std::string, int> seen;
  for (const auto& [seq, fate] : fates) {
    switch (fate) {
      case Fate::committed: s.committed++; break;
      case Fate::rolled_back: s.rolled_back++; break;
      case Fate::savepoint: s.savepoint_rolled_back++; break;
      case Fate::failed: s.failed++; break;
      case Fate::in_doubt: s.in_doubt++; break;
    }
  }

  // Deliveries in the order the receiver answered them.
  std::unordered_map<int64_t, int64_t> copies;
  std::unordered_map<int64_t, int64_t> first_ms;
  std::map<std::string, int64_t> last_first_seq;   // per key: the newest event delivered so far
  std::map<std::string, std::set<int64_t>> done_of_key;
  for (const auto& d : deliveries) {
    s.attempts++;
    if (d.status < 200 || d.status >= 300) continue;
    s.deliveries++;
    const int64_t n = ++copies[d.seq];
    if (n == 1) {
      first_ms[d.seq] = d.ms;
      auto it = last_first_seq.find(d.key);
      if (it != last_first_seq.end() && d.seq < it->second) {
        s.order_violations++;
        note(s.problems, seen, "order", "key " + d.key + ": seq " + std::to_string(d.seq) +
                                            " first delivered after seq " + std::to_string(it->second));
      }
      if (it == last_first_seq.end() || d.seq > it->second) last_first_seq[d.key] = d.seq;
    } else {
      s.duplicates++;
      if (last_first_seq[d.key] > d.seq) s.late_redeliveries++;
    }
    s.max_copies = std::max(s.max_copies, n);
    auto f = fates.find(d.seq);
    if (n == 1 && (f == fates.end() || (f->second != Fate::committed && f->second != Fate::in_doubt))) {
      s.unexpected++;
      note(s.problems, seen, "unexpected",
           "seq " + std::to_string(d.seq) + " delivered but its fate is " +
               (f == fates.end() ? std::string("unknown") : std::string(1, static_cast<char>(f->second))));
    }
    if (n == 1 && f != fates.end() && f->second == Fate::in_doubt) s.in_doubt_delivered++;
  }
  for (const auto& [seq, fate] : fates) {
    if (fate != Fate::committed) continue;
    if (copies.count(seq)) {
      s.delivered++;
    } else {
      s.lost++;
      note(s.problems, seen, "lost", "seq " + std::to_string(seq) + " committed, never delivered");
    }
  }

  // Per fault window.
  for (size_t i = 0; i < phases.size(); ++i) {
    PhaseResult r;
    r.phase = phases[i];
    const int64_t from = phases[i].start_ms;
    const int64_t to = i + 1 < phases.size() ? phases[i + 1].start_ms : INT64_MAX;
    for (const auto& [seq, ms] : commit_ms) {
      if (ms < from || ms >= to) continue;
      r.produced++;
      if (!copies.count(seq)) r.lost++;
    }
    std::unordered_map<int64_t, int> seen_copy;
    for (const auto& d : deliveries) {
      if (d.status < 200 || d.status >= 300) continue;
      if (++seen_copy[d.seq] > 1 && d.ms >= from && d.ms < to) r.duplicates++;
    }
    s.phases.push_back(r);
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
  std::unordered_set<int64_t> in_db;
  for (const auto& row : tx.exec("SELECT coalesce(payload->>'seq', payload->'new'->>'seq')::bigint FROM pgrelay.db_events")) {
    if (!row[0].is_null()) in_db.insert(row[0].as<int64_t>());
  }
  for (const auto& [seq, fate] : fates) {
    if (fate == Fate::committed && !in_db.count(seq)) {
      s.committed_missing_in_db++;
      note(s.problems, seen, "missing row", "seq " + std::to_string(seq));
    }
  }
  for (int64_t seq : in_db) {
    auto f = fates.find(seq);
    if (f == fates.end() || (f->second != Fate::committed && f->second != Fate::in_doubt)) {
      s.uncommitted_in_db++;
      note(s.problems, seen, "uncommitted row", "seq " + std::to_string(seq));
    }
  }
  return s;
}

void print_summary(const Summary& s, std::ostream& out) {
  out << "\nfault                 produced  lost  dups  in-flight bound  recovery ms\n";
  for (const auto& r : s.phases) {
    out << std::left << std::setw(22) << r.phase.name << std::right << std::setw(8) << r.produced << std::setw(6)
        << r.lost << std::setw(6) << r.duplicates << std::setw(17) << r.phase.in_flight_bound << std::setw(13)
        << (r.phase.recovery_ms < 0 ? std::string("-") : std::to_string(r.phase.recovery_ms)) << "\n";
  }
  out << "\ntotal: committed " << s.committed << ", rolled back " << s.rolled_back << " (+" << s.savepoint_rolled_back
      << " to a savepoint), failed before commit " << s.failed << ", in doubt " << s.in_doubt << " ("
      << s.in_doubt_delivered << " of them delivered)\n"
      << "delivered " << s.delivered << " distinct / " << s.deliveries << " 2xx answers / " << s.attempts
      << " requests; LOST " << s.lost << ", UNEXPECTED " << s.unexpected << ", duplicates " << s.duplicates
      << " (max copies of one event " << s.max_copies << ")\n"
      << "per-key order: " << s.order_violations << " violations of first delivery, " << s.late_redeliveries
      << " late re-deliveries of an older event\n"
      << "rows: pending " << s.rows_pending << ", processing " << s.rows_processing << ", done " << s.rows_done
      << ", dead " << s.rows_dead << ", expired leases " << s.expired_leases << "; committed missing in table "
      << s.committed_missing_in_db << ", uncommitted in table " << s.uncommitted_in_db
      << "; notification queue usage " << s.notify_queue_usage << "\n";
  for (const auto& p : s.problems) out << "  problem: " << p << "\n";
  out << (s.ok() ? "RESULT: PASS\n" : "RESULT: FAIL\n");
}

}  // namespace pgrelay::faults
