// The idle cost of a wake mode: runs a Relay (wake mode from --wake) with a no-op
// handler against an empty outbox for --seconds after --settle-ms, and counts its
// claim round trips (RelayStats::claim_batches). In poll mode an empty claim is
// followed by a next-due probe, so the database sees about twice as many statements.
// Prints one JSON object: {"wake","seconds","claims","claims_per_s","poll_interval_ms","poll_max_ms"}.
#include <chrono>
#include <iostream>
#include <thread>

#include "bench_util.hpp"
#include "core/log.hpp"
#include "relay/relay.hpp"

namespace {
class NoopHandler : public pgrelay::Handler {
 public:
  void deliver(std::shared_ptr<const pgrelay::Event>, Done done) override { done(pgrelay::Outcome::ok()); }
};
}  // namespace

int main(int argc, char** argv) {
  try {
    const auto f = bench::parse_flags(argc, argv);
    pgrelay::log::configure(pgrelay::log::Level::warn, pgrelay::log::Format::text);
    pgrelay::Config c;
    c.database.url = bench::flag(f, "db", "");
    c.relay.id = "bench-idle";
    c.relay.wake = bench::flag(f, "wake", "poll");
    c.relay.poll_interval_ms = bench::flag_int(f, "poll-ms", c.relay.poll_interval_ms);
    c.relay.poll_max_ms = bench::flag_int(f, "poll-max-ms", c.relay.poll_max_ms);
    const int64_t seconds = bench::flag_int(f, "seconds", 5);
    const int64_t settle_ms = bench::flag_int(f, "settle-ms", 1000);
    pgrelay::Relay relay(c);
    relay.add_handler("noop", std::make_unique<NoopHandler>());
    relay.add_route("*", {"noop"});
    std::thread runner([&relay] { relay.run(); });
    std::this_thread::sleep_for(std::chrono::milliseconds(settle_ms));
    const int64_t c0 = relay.stats().claim_batches.load();
    const auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    const int64_t c1 = relay.stats().claim_batches.load();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    relay.request_stop();
    runner.join();
    std::cout << "{\"wake\":\"" << c.relay.wake << "\",\"seconds\":" << s << ",\"claims\":" << (c1 - c0)
              << ",\"claims_per_s\":" << static_cast<double>(c1 - c0) / s
              << ",\"poll_interval_ms\":" << c.relay.poll_interval_ms << ",\"poll_max_ms\":" << c.relay.poll_max_ms
              << "}\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "relay_idle: " << e.what() << "\n";
    return 1;
  }
}
