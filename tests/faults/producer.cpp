// The fault runs' producer (see producer.hpp): paced transactions over several
// direct connections, each rebuilt whenever the server goes away.
#include "faults/producer.hpp"

#include <algorithm>
#include <map>
#include <pqxx/pqxx>
#include <random>
#include <tuple>

#include "faults/routes.hpp"

namespace pgrelay::faults {
namespace {

std::string array_literal(const std::vector<int64_t>& v) {
  std::string s = "{";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "}";
}

// Our keys and types hold neither quotes nor backslashes.
std::string array_literal(const std::vector<std::string>& v) {
  std::string s = "{";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ",\"" : "\"") + v[i] + "\"";
  return s + "}";
}

struct Row {
  int64_t seq;
  std::string key;    // the event's key
  std::string value;  // emit: the event type; tracked table: the value of its key column
};

}  // namespace

Producer::Producer(ProducerOptions options) : options_(std::move(options)) {}

Producer::~Producer() { stop(); }

void Producer::prepare(const std::string& url, int keys) {
  pqxx::connection c{url};
  pqxx::work tx{c};
  tx.exec("CREATE TABLE IF NOT EXISTS public.fault_items (seq bigint PRIMARY KEY, k text NOT NULL)");
  tx.exec("SELECT pgrelay.track('public.fault_items', key_columns => '{k}', operations => '{insert}')");
  tx.exec("CREATE TABLE IF NOT EXISTS public.fault_key_clock (k text PRIMARY KEY, n bigint NOT NULL DEFAULT 0)");
  tx.exec_params(
      "INSERT INTO public.fault_key_clock (k) SELECT p || g FROM generate_series(0, $1 - 1) g, "
      "unnest('{e,fault_items:t}'::text[]) p ON CONFLICT DO NOTHING",
      keys);
  tx.commit();
}

void Producer::start() {
  log_.open(options_.log_path, std::ios::out | std::ios::trunc);
  t0_ = std::chrono::steady_clock::now();
  for (int i = 0; i < options_.connections; ++i) threads_.emplace_back([this, i] { run(i); });
}

void Producer::stop() {
  stopping_ = true;
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (log_.is_open()) log_.close();
}

std::unordered_map<int64_t, Produced> Producer::produced() const {
  std::lock_guard<std::mutex> lock(mu_);
  return produced_;
}

void Producer::record(int64_t seq, const Produced& p) {
  std::lock_guard<std::mutex> lock(mu_);
  produced_[seq] = p;
  log_ << static_cast<char>(p.fate) << ' ' << seq << ' ' << p.ms << ' ' << p.producer << ' ' << p.key << ' '
       << p.key_clock << '\n';
}

void Producer::run(int index) {
  using clock = std::chrono::steady_clock;
  const auto tx_interval =
      std::chrono::microseconds(1000000LL * options_.events_per_tx * options_.connections / options_.events_per_s);
  auto ms_now = [this] { return std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - t0_).count(); };
  std::mt19937_64 rng(static_cast<uint64_t>(index) + 1);
  std::uniform_int_distribution<int> key_index(0, options_.keys - 1);
  std::uniform_int_distribution<int> work_us(0, options_.max_work_us);
  // Independent producers: exponential gaps between one connection's transactions
  // (a steady pace would keep the connections' transactions apart forever).
  std::exponential_distribution<double> gap(1.0);
  std::unique_ptr<pqxx::connection> conn;
  auto next_at = clock::now();
  while (!stopping_) {
    std::this_thread::sleep_until(next_at);
    next_at += std::chrono::duration_cast<clock::duration>(tx_interval * std::min(gap(rng), 5.0));
    if (clock::now() > next_at + std::chrono::seconds(1)) next_at = clock::now();  // do not burst after an outage
    if (!conn) {
      try {
        conn = std::make_unique<pqxx::connection>(options_.url + " application_name=fault-producer-" +
                                                  std::to_string(index));
      } catch (const std::exception&) {
        reconnects_++;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
    }
    const int burst = index == 0 ? burst_.exchange(0) : 0;
    const int events = burst > 0 ? burst : options_.events_per_tx;
    const int64_t tx_no = next_tx_++;
    const bool roll_back = burst == 0 && tx_no % options_.rollback_every == 0;
    const bool savepoint = !roll_back && tx_no % options_.savepoint_every == 0;
    const int64_t first = next_seq_.fetch_add(events + (savepoint ? 1 : 0));
    // Keys drawn at random from the set every connection shares, so producers of
    // one key meet. Each transaction takes its key locks in one global order (its
    // events sorted by key; emit()'s e-keys before the table's keys), so producers
    // wait for each other and never deadlock.
    std::vector<Row> emitted, inserted;
    for (int i = 0; i < events; ++i) {
      const int64_t seq = first + i;
      const std::string k = std::to_string(key_index(rng));
      if (seq % 2) {
        inserted.push_back(Row{seq, "fault_items:t" + k, "t" + k});
      } else {
        emitted.push_back(Row{seq, "e" + k, routing_of(seq).type});
      }
    }
    auto by_key = [](const Row& a, const Row& b) { return std::tie(a.key, a.seq) < std::tie(b.key, b.seq); };
    std::sort(emitted.begin(), emitted.end(), by_key);
    std::sort(inserted.begin(), inserted.end(), by_key);
    const int64_t savepoint_seq = savepoint ? first + events : 0;
    std::vector<Row> all(emitted);
    all.insert(all.end(), inserted.begin(), inserted.end());
    std::vector<int64_t> emit_seqs, insert_seqs;
    std::vector<std::string> emit_keys, emit_types, insert_values, keys;
    for (const Row& r : emitted) {
      emit_seqs.push_back(r.seq);
      emit_keys.push_back(r.key);
      emit_types.push_back(r.value);
    }
    for (const Row& r : inserted) {
      insert_seqs.push_back(r.seq);
      insert_values.push_back(r.value);
    }
    for (const Row& r : all) {
      if (keys.empty() || keys.back() != r.key) keys.push_back(r.key);
    }
    std::map<std::string, int64_t> key_clock;
    const int64_t began = ms_now();
    auto finish = [&](Fate fate, int64_t ms) {
      for (const Row& r : all) {
        auto c = key_clock.find(r.key);
        record(r.seq, Produced{fate, ms, began, index, r.key, c == key_clock.end() ? 0 : c->second});
      }
      if (savepoint) record(savepoint_seq, Produced{Fate::savepoint, ms, began, index, "e0", 0});
    };
    bool commit_sent = false;
    try {
      pqxx::work tx{*conn};
      if (savepoint) {
        // First, on the key that sorts first, to keep the lock order.
        tx.exec("SAVEPOINT sp");
        tx.exec_params("SELECT pgrelay.emit('fault.emit', jsonb_build_object('seq', $1::bigint), 'e0')", savepoint_seq);
        tx.exec("ROLLBACK TO SAVEPOINT sp");
      }
      if (!emitted.empty()) {
        tx.exec_params(
            "SELECT pgrelay.emit(u.t, jsonb_build_object('seq', u.s), u.k) "
            "FROM unnest($1::bigint[], $2::text[], $3::text[]) WITH ORDINALITY AS u(s, k, t, o) ORDER BY u.o",
            array_literal(emit_seqs), array_literal(emit_keys), array_literal(emit_types));
      }
      if (!inserted.empty()) {
        tx.exec_params(
            "INSERT INTO public.fault_items (seq, k) SELECT u.s, u.k "
            "FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS u(s, k, o) ORDER BY u.o",
            array_literal(insert_seqs), array_literal(insert_values));
      }
      // The application's own work in the transaction, with its key locks held:
      // what makes producers of one key wait for each other.
      if (const int us = work_us(rng); us > 0) tx.exec("SELECT pg_sleep(" + std::to_string(us / 1e6) + ")");
      if (roll_back) {
        tx.abort();
        finish(Fate::rolled_back, ms_now());
        continue;
      }
      for (const auto& row : tx.exec_params("UPDATE public.fault_key_clock SET n = n + 1 WHERE k = ANY($1::text[]) "
                                            "RETURNING k, n",
                                            array_literal(keys))) {
        key_clock[row[0].as<std::string>()] = row[1].as<int64_t>();
      }
      commit_sent = true;
      tx.commit();
      finish(Fate::committed, ms_now());
      int64_t seen = last_committed_.load();
      const int64_t mine = all.empty() ? 0 : std::max_element(all.begin(), all.end(), [](const Row& a, const Row& b) {
                                               return a.seq < b.seq;
                                             })->seq;
      while (mine > seen && !last_committed_.compare_exchange_weak(seen, mine)) {
      }
    } catch (const std::exception&) {
      // Before COMMIT was sent nothing is committed; during it (connection lost,
      // server shutting down), nobody knows: the checker accepts either outcome.
      finish(commit_sent ? Fate::in_doubt : Fate::failed, ms_now());
      conn.reset();
      reconnects_++;
    }
  }
}

}  // namespace pgrelay::faults
