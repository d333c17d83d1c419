// A separate producer process for the latency bench: calls pgrelay.emit() in its
// own transaction at a steady --rate for --seconds over --conns connections
// (event i is due at start + i/rate), and writes "id commit_wall_us" per event to
// --out, the commit time being when COMMIT returned to the producer.
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
    const int64_t total = static_cast<int64_t>(rate * seconds);

    std::vector<std::unique_ptr<pqxx::connection>> cs;
    for (int i = 0; i < conns; ++i) {
      cs.push_back(std::make_unique<pqxx::connection>(db));
      cs.back()->prepare("emit", "SELECT pgrelay.emit($1, $2::jsonb)");
    }
    std::vector<std::vector<std::pair<int64_t, int64_t>>> logs(conns);
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
          pqxx::nontransaction tx(c);
          const int64_t id = tx.exec_prepared1("emit", type, "{\"seq\":" + std::to_string(i) + "}")[0].as<int64_t>();
          log.emplace_back(id, bench::wall_us());
        }
      });
    }
    for (auto& t : ts) t.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    FILE* fp = std::fopen(out.c_str(), "w");
    if (!fp) throw std::runtime_error("cannot write " + out);
    for (const auto& log : logs) {
      for (const auto& [id, us] : log)
        std::fprintf(fp, "%lld %lld\n", static_cast<long long>(id), static_cast<long long>(us));
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
