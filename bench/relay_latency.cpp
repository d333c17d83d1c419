// End-to-end latency, commit -> handler start: runs a Relay (wake mode from
// --wake, default notify) with a handler that records when each event reaches
// it, starts bench/paced_producer as a separate process, waits for every event,
// and joins the producer's commit times with the handler's start times by id.
// Events of the first --warmup-ms are left out. Clocks agree: same machine.
// Prints one JSON object: {"rate","wake","events","p50_ms","p90_ms","p99_ms","max_ms","producer":{...}};
// with --wake wal also "wal_slot": whether the relay was seen streaming from a
// pgrelay_wake_* replication slot (false: the wal waker is not wired, and the
// relay only found events by its periodic claim every poll_interval_ms).
// --relays N runs N relays (each its own Relay, as N sidecars would be). With --mix
// TABLE the producer alternates unkeyed emits, keyed emits and updates of a tracked
// table (see paced_producer), and the output adds "unkeyed" and "keyed" objects with
// their own percentiles, and "keyed_p99_ratio" = keyed p99 / unkeyed p99.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <vector>

#include <pqxx/pqxx>

#include "bench_util.hpp"
#include "core/log.hpp"
#include "relay/relay.hpp"

namespace {

class RecordingHandler : public pgrelay::Handler {
 public:
  explicit RecordingHandler(size_t expect) { starts_.reserve(expect); }
  void deliver(std::shared_ptr<const pgrelay::Event> event, Done done) override {
    const int64_t now = bench::wall_us();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      starts_.emplace_back(event->id, now);
    }
    done(pgrelay::Outcome::ok());
  }
  std::vector<std::pair<int64_t, int64_t>> take() {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::move(starts_);
  }

 private:
  std::mutex mutex_;
  std::vector<std::pair<int64_t, int64_t>> starts_;
};

}  // namespace

int main(int argc, char** argv) {
  try {
    const auto f = bench::parse_flags(argc, argv);
    const std::string db = bench::flag(f, "db", "");
    const int64_t rate = bench::flag_int(f, "rate", 1000);
    const int64_t seconds = bench::flag_int(f, "seconds", 5);
    const int64_t conns = bench::flag_int(f, "conns", 2);
    const int64_t warmup_ms = bench::flag_int(f, "warmup-ms", 500);
    const std::string producer = bench::flag(f, "producer", "");
    const std::string out = bench::flag(f, "tmp", "/tmp/pgrelay-bench-latency.txt");
    const int64_t relays = bench::flag_int(f, "relays", 1);
    const std::string mix = bench::flag(f, "mix", "");
    pgrelay::log::configure(pgrelay::log::Level::warn, pgrelay::log::Format::text);

    pgrelay::Config c;
    c.database.url = db;
    c.relay.id = "bench-latency";
    c.relay.wake = bench::flag(f, "wake", "notify");
    // Defaults are pgrelay's own (relay.poll_interval_ms, relay.poll_max_ms) unless given.
    c.relay.poll_interval_ms = bench::flag_int(f, "poll-ms", c.relay.poll_interval_ms);
    c.relay.poll_max_ms = bench::flag_int(f, "poll-max-ms", c.relay.poll_max_ms);
    std::vector<std::unique_ptr<pgrelay::Relay>> fleet;
    std::vector<RecordingHandler*> recorders;
    std::vector<std::thread> runners;
    for (int64_t r = 0; r < relays; ++r) {
      if (relays > 1) c.relay.id = "bench-latency-" + std::to_string(r);
      fleet.push_back(std::make_unique<pgrelay::Relay>(c));
      auto handler = std::make_unique<RecordingHandler>(static_cast<size_t>(rate * seconds));
      recorders.push_back(handler.get());
      fleet.back()->add_handler("record", std::move(handler));
      fleet.back()->add_route("*", {"record"});
    }
    for (auto& relay : fleet) runners.emplace_back([&relay] { relay->run(); });
    const auto stop_fleet = [&] {
      for (auto& relay : fleet) relay->request_stop();
      for (auto& t : runners) t.join();
    };
    const auto delivered = [&] {
      int64_t sum = 0;
      for (auto& relay : fleet) sum += relay->stats().delivered.load();
      return sum;
    };

    const auto ready_by = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (auto& relay : fleet) {
      while (c.relay.wake == "notify" && !relay->listening() && std::chrono::steady_clock::now() < ready_by) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    // wal: wait (up to 5 s) until the relay streams from its temporary slot.
    bool wal_slot = false;
    if (c.relay.wake == "wal") {
      pqxx::connection probe(db);
      const auto slot_by = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (!wal_slot && std::chrono::steady_clock::now() < slot_by) {
        pqxx::nontransaction tx(probe);
        wal_slot = tx.exec1(
                         "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgrelay\\_wake\\_%' "
                         "AND active")[0]
                       .as<int64_t>() > 0;
        if (!wal_slot) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));

    // The producer is a separate process, as an application would be.
    const std::string rate_s = std::to_string(rate), secs_s = std::to_string(seconds), conns_s = std::to_string(conns);
    int pipefd[2];
    if (pipe(pipefd) != 0) throw std::runtime_error("pipe failed");
    const pid_t pid = fork();
    if (pid == 0) {
      dup2(pipefd[1], STDOUT_FILENO);
      close(pipefd[0]);
      if (mix.empty()) {
        execl(producer.c_str(), producer.c_str(), "--db", db.c_str(), "--rate", rate_s.c_str(), "--seconds",
              secs_s.c_str(), "--conns", conns_s.c_str(), "--out", out.c_str(), static_cast<char*>(nullptr));
      } else {
        execl(producer.c_str(), producer.c_str(), "--db", db.c_str(), "--rate", rate_s.c_str(), "--seconds",
              secs_s.c_str(), "--conns", conns_s.c_str(), "--out", out.c_str(), "--mix", mix.c_str(),
              static_cast<char*>(nullptr));
      }
      _exit(127);
    }
    close(pipefd[1]);
    std::string producer_json;
    char buf[512];
    ssize_t n;
    while ((n = read(pipefd[0], buf, sizeof buf)) > 0) producer_json.append(buf, static_cast<size_t>(n));
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      stop_fleet();
      throw std::runtime_error("producer failed");
    }
    while (!producer_json.empty() && producer_json.back() == '\n') producer_json.pop_back();

    struct Commit {
      int64_t wall_us;
      bool keyed;
    };
    std::unordered_map<int64_t, Commit> commits;
    {
      std::ifstream in(out);
      std::string line;
      while (std::getline(in, line)) {
        std::istringstream fields(line);
        int64_t id = 0, us = 0;
        int source = 0;
        if (fields >> id >> us) {
          fields >> source;  // absent without --mix: unkeyed
          commits[id] = {us, source != 0};
        }
      }
    }
    const auto wait_by = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (delivered() < static_cast<int64_t>(commits.size()) && std::chrono::steady_clock::now() < wait_by) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    stop_fleet();
    std::remove(out.c_str());

    int64_t first_commit = INT64_MAX;
    for (const auto& [id, commit] : commits) first_commit = std::min(first_commit, commit.wall_us);
    std::vector<double> lat_ms, keyed_ms, unkeyed_ms;
    int64_t missing = static_cast<int64_t>(commits.size());
    for (RecordingHandler* rec : recorders) {
      for (const auto& [id, start] : rec->take()) {
        auto it = commits.find(id);
        if (it == commits.end()) continue;
        --missing;
        if (it->second.wall_us < first_commit + warmup_ms * 1000) continue;
        const double ms = static_cast<double>(start - it->second.wall_us) / 1000.0;
        lat_ms.push_back(ms);
        (it->second.keyed ? keyed_ms : unkeyed_ms).push_back(ms);
      }
    }
    for (auto* v : {&lat_ms, &keyed_ms, &unkeyed_ms}) std::sort(v->begin(), v->end());
    const auto percentiles = [](const std::vector<double>& v) {
      std::ostringstream o;
      o << "{\"events\":" << v.size() << ",\"p50_ms\":" << bench::percentile(v, 50)
        << ",\"p99_ms\":" << bench::percentile(v, 99) << ",\"max_ms\":" << (v.empty() ? 0 : v.back()) << "}";
      return o.str();
    };
    std::cout << "{\"rate\":" << rate << ",\"relays\":" << relays << ",\"wake\":\"" << c.relay.wake
              << "\",\"poll_interval_ms\":" << c.relay.poll_interval_ms << ",\"poll_max_ms\":" << c.relay.poll_max_ms;
    if (c.relay.wake == "wal") std::cout << ",\"wal_slot\":" << (wal_slot ? "true" : "false");
    std::cout << ",\"events\":" << lat_ms.size() << ",\"missing\":" << missing
              << ",\"p50_ms\":" << bench::percentile(lat_ms, 50) << ",\"p90_ms\":" << bench::percentile(lat_ms, 90)
              << ",\"p99_ms\":" << bench::percentile(lat_ms, 99)
              << ",\"max_ms\":" << (lat_ms.empty() ? 0 : lat_ms.back());
    if (!mix.empty()) {
      const double unkeyed_p99 = bench::percentile(unkeyed_ms, 99);
      std::cout << ",\"unkeyed\":" << percentiles(unkeyed_ms) << ",\"keyed\":" << percentiles(keyed_ms)
                << ",\"keyed_p99_ratio\":" << (unkeyed_p99 > 0 ? bench::percentile(keyed_ms, 99) / unkeyed_p99 : 0);
    }
    std::cout << ",\"producer\":" << producer_json << "}\n";
    return missing == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "relay_latency: " << e.what() << "\n";
    return 1;
  }
}
