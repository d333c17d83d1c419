// The fault runs' producer (see producer.hpp): paced transactions over a direct
// connection that it rebuilds whenever the server goes away.
#include "faults/producer.hpp"

#include <algorithm>
#include <pqxx/pqxx>
#include <sstream>
#include <vector>

namespace pgrelay::faults {
namespace {

std::string array_literal(const std::vector<int64_t>& v) {
  std::string s = "{";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "}";
}

}  // namespace

Producer::Producer(ProducerOptions options) : options_(std::move(options)) {}

Producer::~Producer() { stop(); }

void Producer::prepare(const std::string& url) {
  pqxx::connection c{url};
  pqxx::work tx{c};
  tx.exec("CREATE TABLE IF NOT EXISTS public.fault_items (seq bigint PRIMARY KEY, k text NOT NULL)");
  tx.exec("SELECT pgrelay.track('public.fault_items', key_columns => '{k}', operations => '{insert}')");
  tx.commit();
}

void Producer::start() {
  log_.open(options_.log_path, std::ios::out | std::ios::trunc);
  t0_ = std::chrono::steady_clock::now();
  thread_ = std::thread([this] { run(); });
}

void Producer::stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  if (log_.is_open()) log_.close();
}

std::unordered_map<int64_t, Fate> Producer::fates() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fates_;
}

std::unordered_map<int64_t, int64_t> Producer::commit_ms() const {
  std::lock_guard<std::mutex> lock(mu_);
  return commit_ms_;
}

void Producer::record(int64_t seq, Fate fate, int64_t ms) {
  std::lock_guard<std::mutex> lock(mu_);
  fates_[seq] = fate;
  if (fate == Fate::committed) commit_ms_[seq] = ms;
  log_ << static_cast<char>(fate) << ' ' << seq << ' ' << ms << '\n';
}

void Producer::run() {
  using clock = std::chrono::steady_clock;
  const auto tx_interval = std::chrono::microseconds(1000000LL * options_.events_per_tx / options_.events_per_s);
  auto ms_now = [this] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - t0_).count();
  };
  std::unique_ptr<pqxx::connection> conn;
  int64_t next_seq = 1;
  int64_t tx_no = 0;
  auto next_at = clock::now();
  while (!stopping_) {
    std::this_thread::sleep_until(next_at);
    next_at += tx_interval;
    if (clock::now() > next_at + std::chrono::seconds(1)) next_at = clock::now();  // do not burst after an outage
    if (!conn) {
      try {
        conn = std::make_unique<pqxx::connection>(options_.url + " application_name=fault-producer");
      } catch (const std::exception&) {
        reconnects_++;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
    }
    ++tx_no;
    const bool roll_back = tx_no % options_.rollback_every == 0;
    const bool savepoint = !roll_back && tx_no % options_.savepoint_every == 0;
    std::vector<int64_t> emitted, inserted;
    for (int i = 0; i < options_.events_per_tx; ++i) {
      const int64_t seq = next_seq++;
      (seq % 2 ? inserted : emitted).push_back(seq);
    }
    const int64_t savepoint_seq = savepoint ? next_seq++ : 0;
    std::vector<int64_t> all(emitted);
    all.insert(all.end(), inserted.begin(), inserted.end());
    bool commit_sent = false;
    try {
      pqxx::work tx{*conn};
      const std::string keys = std::to_string(options_.keys);
      tx.exec_params("SELECT pgrelay.emit('fault.emit', jsonb_build_object('seq', s), 'e' || (s % " + keys +
                         ")) FROM unnest($1::bigint[]) WITH ORDINALITY AS u(s, o) ORDER BY o",
                     array_literal(emitted));
      tx.exec_params("INSERT INTO public.fault_items (seq, k) SELECT s, 't' || (s % " + keys +
                         ") FROM unnest($1::bigint[]) WITH ORDINALITY AS u(s, o) ORDER BY o",
                     array_literal(inserted));
      if (savepoint) {
        tx.exec("SAVEPOINT sp");
        tx.exec_params("SELECT pgrelay.emit('fault.emit', jsonb_build_object('seq', $1::bigint), 'e0')",
                       savepoint_seq);
        tx.exec("ROLLBACK TO SAVEPOINT sp");
      }
      if (roll_back) {
        tx.abort();
        for (int64_t s : all) record(s, Fate::rolled_back, ms_now());
        continue;
      }
      commit_sent = true;
      tx.commit();
      const int64_t ms = ms_now();
      for (int64_t s : all) record(s, Fate::committed, ms);
      if (savepoint) record(savepoint_seq, Fate::savepoint, ms);
      last_committed_ = all.empty() ? last_committed_.load() : std::max(emitted.back(), inserted.back());
    } catch (const std::exception&) {
      // Before COMMIT was sent nothing is committed; during it (connection lost,
      // server shutting down), nobody knows: the checker accepts either outcome.
      const int64_t ms = ms_now();
      for (int64_t s : all) record(s, commit_sent ? Fate::in_doubt : Fate::failed, ms);
      if (savepoint) record(savepoint_seq, Fate::savepoint, ms);
      conn.reset();
      reconnects_++;
    }
  }
}

}  // namespace pgrelay::faults
