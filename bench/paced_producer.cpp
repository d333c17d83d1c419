// A separate producer process for the latency bench: calls pgrelay.emit() in its
// own transaction at a steady --rate for --seconds over --conns connections
// (event i is due at start + i/rate), and writes "id commit_wall_us" per event to
// --out, the commit time being when COMMIT returned to the producer.
// With --mix TABLE the events alternate between three sources, and a third column
// says which: 0 an unkeyed emit(), 1 an emit() keyed 'TABLE:n', 2 an UPDATE of row n
// of the track()ed public.TABLE (whose events carry that same key), n = i % --keys.
// The two keyed sources share keys, so the relay's per-key order spans both.
// Prints one JSON object: {"events","seconds","rate","max_lag_ms"}.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <thread>
#include <vector>

#include <pqxx/pqxx>

#include "bench_util.hpp"

int main(int argc, char** argv) {
  try {
    const auto f = bench::parse_flags(argc, argv);
    const std::string db = bench::flag(f, "db", "");
    const double rate = static_cast<double>(bench::flag_int(f, "rate", 1000));
    const double seconds = static_cast<double>(bench::flag_int(f, "seconds", 5));
    const int conns = static_cast<int>(bench::flag_int(f, "conns", 2));
    const std::string out = bench::flag(f, "out", "/dev/null");
    const std::string type = bench::flag(f, "type", "bench.latency");
    const std::string mix_table = bench::flag(f, "mix", "");
    const int64_t keys = bench::flag_int(f, "keys", 200);
    const int64_t total = static_cast<int64_t>(rate * seconds);

    std::vector<std::unique_ptr<pqxx::connection>> cs;
    for (int i = 0; i < conns; ++i) {
      cs.push_back(std::make_unique<pqxx::connection>(db));
      cs.back()->prepare("emit", "SELECT pgrelay.emit($1, $2::jsonb)");
      if (!mix_table.empty()) {
        cs.back()->prepare("emit_keyed", "SELECT pgrelay.emit($1, $2::jsonb, $3)");
        // The capture trigger's row is the last id this session took from db_events.
        cs.back()->prepare("update_tracked",
                           "UPDATE public." + cs.back()->quote_name(mix_table) + " SET n = n + 1 WHERE id = $1");
        cs.back()->prepare("last_event_id", "SELECT currval(pg_get_serial_sequence('pgrelay.db_events', 'id'))");
      }
    }
    struct Commit {
      int64_t id, wall_us;
      int source;
    };
    std::vector<std::vector<Commit>> logs(conns);
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> max_lag_us{0};
    const auto start = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
    std::vector<std::thread> ts;
    for (int t = 0; t < conns; ++t) {
      ts.emplace_back([&, t] {
        auto& log = logs[t];
        log.reserve(static_cast<size_t>(total / conns + 16));
        pqxx::connection& c = *cs[t];
        for (;;) {
          const int64_t i = next++;
          if (i >= total) break;
          const auto due = start + std::chrono::microseconds(static_cast<int64_t>(i * 1e6 / rate));
          std::this_thread::sleep_until(due);
          const int64_t lag =
              std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - due).count();
          int64_t m = max_lag_us.load();
          while (lag > m && !max_lag_us.compare_exchange_weak(m, lag)) {
          }
          const std::string payload = "{\"seq\":" + std::to_string(i) + "}";
          const int source = mix_table.empty() ? 0 : static_cast<int>(i % 3);
          const int64_t n = i % keys;
          int64_t id = 0;
          if (source == 0) {
            pqxx::nontransaction tx(c);
            id = tx.exec_prepared1("emit", type, payload)[0].as<int64_t>();
          } else if (source == 1) {
            pqxx::nontransaction tx(c);
            id = tx.exec_prepared1("emit_keyed", type, payload, mix_table + ":" + std::to_string(n))[0].as<int64_t>();
          } else {
            pqxx::work tx(c);
            tx.exec_prepared0("update_tracked", n);
            id = tx.exec_prepared1("last_event_id")[0].as<int64_t>();
            tx.commit();
          }
          log.push_back({id, bench::wall_us(), source});
        }
      });
    }
    for (auto& t : ts) t.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    FILE* fp = std::fopen(out.c_str(), "w");
    if (!fp) throw std::runtime_error("cannot write " + out);
    for (const auto& log : logs) {
      for (const auto& e : log)
        std::fprintf(fp, "%lld %lld %d\n", static_cast<long long>(e.id), static_cast<long long>(e.wall_us), e.source);
    }
    std::fclose(fp);
    std::cout << "{\"events\":" << total << ",\"seconds\":" << s << ",\"rate\":" << total / s
              << ",\"max_lag_ms\":" << max_lag_us.load() / 1000.0 << "}\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "paced_producer: " << e.what() << "\n";
    return 1;
  }
}
