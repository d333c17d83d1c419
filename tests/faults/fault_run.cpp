// fault_run: the fault suite. Starts a dedicated PostgreSQL cluster, two real
// `pgrelay run` processes behind a TCP proxy, a webhook receiver behind another
// proxy, an sql ledger and a flaky command beside it on mixed routes, and
// producers on several connections; injects every fault of the matrix in turn
// while events flow; then drains and checks (tests/faults/checker.hpp).
//   fault_run [--profile bounded|full] [--rate EVENTS_PER_S] [--out DIR] [--root SRC] [--pgrelay BIN]
// Exits 0 if nothing was lost, nothing unexpected delivered, no sql effect
// happened twice, no event is done without every routed handler's success,
// per-key order held, every relay recovered from every fault and every row is
// done or dead; 1 otherwise; 2 on bad usage.
#include <rapidjson/document.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <iostream>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "faults/checker.hpp"
#include "faults/effects.hpp"
#include "faults/producer.hpp"
#include "faults/routes.hpp"
#include "faults/tcp_proxy.hpp"
#include "support/test_db.hpp"
#include "support/child_process.hpp"
#include "support/http_receiver.hpp"

using namespace pgrelay::faults;
using pgrelay::test::ChildProcess;
using pgrelay::test::HttpReceiver;
using pgrelay::test::Reply;
using pgrelay::test::scalar_at;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

// The relays' lease: short, so that an outage or a stall can outlast it.
constexpr milliseconds kLease{3000};

struct Profile {
  std::string name;
  int rate = 200, per_tx = 5, keys = 40, connections = 3;
  int kills = 3, pg_restarts = 1, pg_outages = 1, stalls = 1, terminations = 2, proxy_rounds = 1;
  int burst = 400;  // events committed at once before an outage or a stall
  milliseconds stall{5000}, webhook_fault{5000}, webhook_gone{5000};
  milliseconds between{1000};
  milliseconds drain{240000};
};

Profile profile_named(const std::string& name) {
  Profile p;
  p.name = name;
  if (name == "full") {
    p.rate = 1000;
    p.per_tx = 10;
    p.keys = 400;  // each key is delivered one event at a time: 2.5 events/s per key
    p.kills = 20;
    p.pg_restarts = 5;
    p.pg_outages = 3;
    p.stalls = 4;
    p.connections = 4;
    p.burst = 800;
    p.terminations = 5;
    p.proxy_rounds = 3;
    p.stall = milliseconds(15000);
    p.webhook_fault = milliseconds(20000);
    p.webhook_gone = milliseconds(60000);
    p.between = milliseconds(2000);
    p.drain = milliseconds(600000);
  } else if (name != "bounded") {
    throw std::invalid_argument("profile \"" + name + "\" is not bounded or full");
  }
  return p;
}

std::string shell(const std::string& cmd) {
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) throw std::runtime_error("cannot run " + cmd);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const int rc = ::pclose(f);
  if (rc != 0) throw std::runtime_error(cmd + " failed (" + std::to_string(rc) + "): " + out);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string field(const std::string& conninfo, const std::string& name) {
  std::smatch m;
  if (!std::regex_search(conninfo, m, std::regex(name + "=(\\S+)")))
    throw std::runtime_error("no " + name + " in " + conninfo);
  return m[1];
}

// The webhook receiver's behaviour, switched by the fault script.
enum class HookMode { ok, error500, hang };

class Recorder {
 public:
  explicit Recorder(Clock::time_point t0) : t0_(t0) {}
  void set_mode(HookMode m) { mode_ = m; }
  Reply answer(const pgrelay::test::ReceivedRequest& req) {
    Delivery d;
    rapidjson::Document doc;
    doc.Parse(req.body.data(), req.body.size());
    if (!doc.HasParseError() && doc.IsObject()) {
      if (doc.HasMember("id") && doc["id"].IsInt64()) d.event_id = doc["id"].GetInt64();
      if (doc.HasMember("attempt") && doc["attempt"].IsInt()) d.attempt = doc["attempt"].GetInt();
      if (doc.HasMember("key") && doc["key"].IsString()) d.key = doc["key"].GetString();
      if (doc.HasMember("payload") && doc["payload"].IsObject()) {
        const auto& p = doc["payload"];
        if (p.HasMember("seq") && p["seq"].IsInt64()) d.seq = p["seq"].GetInt64();
        if (p.HasMember("new") && p["new"].IsObject() && p["new"].HasMember("seq") && p["new"]["seq"].IsInt64())
          d.seq = p["new"]["seq"].GetInt64();
      }
    }
    d.relay = req.header("x-relay");
    d.ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0_).count();
    d.wall_us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    const HookMode m = mode_.load();
    Reply r = Reply::with_status(m == HookMode::error500 ? 500 : 200, "ok");
    if (m == HookMode::hang) r.never_answer = true;
    // A receiver that takes a little time keeps events in flight, so a crash
    // always catches some mid-delivery.
    if (m == HookMode::ok) r.delay = milliseconds(20);
    d.status = m == HookMode::hang ? 0 : r.status;
    std::lock_guard<std::mutex> lock(mu_);
    if (d.status == 200) {
      max_seq_ok_ = std::max(max_seq_ok_, d.seq);
      last_ok_ms_[d.relay] = d.ms;
    }
    all_.push_back(std::move(d));
    return r;
  }
  int64_t max_delivered_seq() const {
    std::lock_guard<std::mutex> lock(mu_);
    return max_seq_ok_;
  }
  // When `relay` last had a delivery answered 200 (ms since start; -1 never).
  int64_t last_ok_ms(const std::string& relay) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = last_ok_ms_.find(relay);
    return it == last_ok_ms_.end() ? -1 : it->second;
  }
  std::vector<Delivery> deliveries() const {
    std::lock_guard<std::mutex> lock(mu_);
    return all_;
  }

 private:
  Clock::time_point t0_;
  std::atomic<HookMode> mode_{HookMode::ok};
  mutable std::mutex mu_;
  int64_t max_seq_ok_ = 0;
  std::map<std::string, int64_t> last_ok_ms_;
  std::vector<Delivery> all_;
};

// The dedicated cluster of this run, stopped (and removed) on destruction.
struct Cluster {
  std::string root, dir, url;
  Cluster(std::string root_dir, std::string pg_dir) : root(std::move(root_dir)), dir(std::move(pg_dir)) {
    url = shell(env() + root + "/scripts/pg start");
  }
  ~Cluster() {
    try {
      shell(env() + root + "/scripts/pg stop");
    } catch (const std::exception& e) {
      std::cerr << "fault_run: " << e.what() << "\n";
    }
  }
  std::string env() const { return "PGRELAY_PG_DIR='" + dir + "' "; }
  void restart_immediate() const { shell(env() + root + "/scripts/pg restart-immediate"); }
  // pg_ctl stop -m fast (sessions are ended, open transactions roll back) and start.
  void stop_server() const { shell(env() + root + "/scripts/pg pg-stop"); }
  void start_server() const { shell(env() + root + "/scripts/pg pg-start"); }
};

class Relay {
 public:
  Relay(std::string bin, std::string name, std::string db, std::string config, std::string log_path)
      : bin_(std::move(bin)),
        name_(std::move(name)),
        db_(std::move(db)),
        config_(std::move(config)),
        log_path_(std::move(log_path)) {
    start();
  }
  ~Relay() { stop(SIGTERM); }
  const std::string& name() const { return name_; }
  void start() {
    child_ = std::make_unique<ChildProcess>(std::vector<std::string>{bin_, "-d", db_, "-c", config_, "run"});
  }
  void signal(int sig) {
    if (child_) child_->signal(sig);
  }
  void stop(int sig) {
    if (!child_) return;
    if (sig != SIGKILL) child_->signal(SIGCONT);  // a stalled relay would never see the signal
    child_->signal(sig);
    auto code = child_->wait(milliseconds(20000));
    std::ofstream(log_path_, std::ios::app)
        << child_->err() << "--- exit " << (code ? *code : -1) << " after signal " << sig << "\n";
    child_.reset();
  }

 private:
  std::string bin_, name_, db_, config_, log_path_;
  std::unique_ptr<ChildProcess> child_;
};

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", ch);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

// Lease claims (the default, and what sql handlers need), finished events kept as
// done so the checker can read them; the routes of routes.hpp.
std::string relay_config(const std::string& name, const std::string& db, uint16_t hook_port,
                         const std::string& command_log) {
  const std::string retry = R"("retry": { "max_attempts": 1000, "base_ms": 100, "cap_ms": 2000, "jitter": 0.2 })";
  std::string command;
  for (const auto& arg : flaky_command(command_log, name)) command += (command.empty() ? "" : ", ") + json_string(arg);
  std::string routes;
  for (const RoutedType& r : kRoutedTypes) {
    std::string handlers;
    if (r.webhook) handlers += "\"hook\"";
    if (r.sql) handlers += std::string(handlers.empty() ? "" : ", ") + "\"ledger\"";
    if (r.command) handlers += std::string(handlers.empty() ? "" : ", ") + "\"flaky\"";
    routes += std::string(routes.empty() ? "" : ",\n    ") + R"({ "match": ")" + r.type + R"(", "handlers": [)" +
              handlers + "] }";
  }
  return R"({
  "database": { "url": ")" +
         db + R"(" },
  "relay": { "id": ")" +
         name + R"(", "claim": "lease", "batch_size": 64, "max_in_flight": 256,
             "lease_ms": )" +
         std::to_string(kLease.count()) + R"(,
             "poll_interval_ms": 1000, "done_retention_s": 86400, "shutdown_timeout_ms": 3000 },
  "log": { "level": "info", "format": "json" },
  "handlers": {
    "hook": { "type": "webhook", "url": "http://127.0.0.1:)" +
         std::to_string(hook_port) + R"(/hook",
              "headers": { "x-relay": ")" +
         name + R"(" },
              "timeout_ms": 2000, "connect_timeout_ms": 1000, "concurrency": 64,
              "circuit_breaker": { "failures": 20, "cooldown_ms": 500 },
              )" +
         retry + R"( },
    "ledger": { "type": "sql", "function": ")" +
         kLedgerFunction + R"(", "timeout_ms": 2500, )" + retry + R"( },
    "flaky": { "type": "command", "command": [)" +
         command + R"(], "timeout_ms": 2000, "concurrency": 16,
               )" +
         retry + R"( }
  },
  "routes": [
    )" + routes +
         R"(
  ]
})";
}

// Watches (every 2 ms, for at most `limit`) for a relay's ack transaction running
// an sql handler; returns whether it saw one.
bool sql_ack_running_within(const std::string& url, milliseconds limit) {
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  const auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    if (tx.exec1("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                 "AND query LIKE '%pgrelay.call_handler(%' AND pid <> pg_backend_pid()")[0]
            .as<int64_t>() > 0)
      return true;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return false;
}

std::string text(const std::string& url, const std::string& sql) {
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  return tx.exec1(sql)[0].as<std::string>();
}

// For a run that did not drain: the first unfinished events of each key still holding
// some (and the unkeyed ones), with what the claim looks at, so the cause can be read.
void write_stuck_keys(const std::string& url, const std::string& path) {
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  std::ofstream out(path);
  out << "id key status type attempts due_in_ms lease_owner token last_error\n";
  for (const auto& r :
       tx.exec("SELECT id, coalesce(key, '-'), status, event_type, attempts, "
               "(extract(epoch FROM next_attempt_at - now()) * 1000)::bigint, coalesce(lease_owner, '-'), "
               "coalesce(claim_token, 0), coalesce(left(last_error, 80), '-') FROM ("
               "  SELECT e.*, row_number() OVER (PARTITION BY e.key ORDER BY e.id) AS pos FROM pgrelay.db_events e"
               "   WHERE e.status IN ('pending', 'processing', 'blocked', 'paused', 'unrouted')) x "
               "WHERE pos <= 4 ORDER BY key, id LIMIT 400")) {
    for (int i = 0; i < 9; ++i) out << (i ? " " : "") << r[i].c_str();
    out << '\n';
  }
  for (const auto& r : tx.exec("SELECT id, seen_at, routes_all, routes_exact, routes_prefix FROM pgrelay.relays"))
    out << "relay " << r[0].c_str() << " seen " << r[1].c_str() << " all " << r[2].c_str() << " exact " << r[3].c_str()
        << " prefix " << r[4].c_str() << '\n';
  std::cout << "[fault_run] stuck events written to " << path << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  std::string profile_name = "bounded", out_dir, root = PGRELAY_SOURCE_DIR, bin = PGRELAY_BIN;
  int rate = 0;  // 0: the profile's
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "fault_run: " << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--profile") profile_name = next();
    else if (a == "--out") out_dir = next();
    else if (a == "--rate") rate = std::stoi(next());
    else if (a == "--root") root = next();
    else if (a == "--pgrelay") bin = next();
    else {
      std::cerr << "usage: fault_run [--profile bounded|full] [--rate EVENTS_PER_S] [--out DIR] [--root SRC] "
                   "[--pgrelay BIN]\n";
      return 2;
    }
  }
  Profile prof;
  try {
    prof = profile_named(profile_name);
    if (rate > 0) prof.rate = rate;
  } catch (const std::exception& e) {
    std::cerr << "fault_run: " << e.what() << "\n";
    return 2;
  }
  if (out_dir.empty()) out_dir = "/tmp/pgrelay-faults-" + std::to_string(::getpid());
  ::mkdir(out_dir.c_str(), 0755);
  auto say = [](const std::string& s) { std::cerr << "[fault_run] " << s << std::endl; };

  try {
    say("profile " + prof.name + ": " + std::to_string(prof.rate) + " events/s; output in " + out_dir);
    Cluster cluster(root, root + "/.pg-faults-" + std::to_string(::getpid()));
    const std::string direct = cluster.url;
    const auto pg_port = static_cast<uint16_t>(std::stoi(field(direct, "port")));
    shell("'" + bin + "' -d '" + direct + "' migrate >/dev/null");
    Producer::prepare(direct, prof.keys);
    prepare_ledger(direct);
    const std::string command_log = out_dir + "/commands.log";
    std::ofstream(command_log, std::ios::trunc).close();

    const auto t0 = Clock::now();
    auto now_ms = [&] { return std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count(); };
    Recorder recorder(t0);
    HttpReceiver receiver;
    receiver.respond_with([&](const pgrelay::test::ReceivedRequest& r) { return recorder.answer(r); });
    TcpProxy hook_proxy(receiver.port());
    TcpProxy db_proxy(pg_port);
    const std::string via_proxy = "host=127.0.0.1 port=" + std::to_string(db_proxy.port()) +
                                  " user=" + field(direct, "user") + " dbname=" + field(direct, "dbname");

    std::vector<std::unique_ptr<Relay>> relays;
    for (const std::string name : {"r1", "r2"}) {
      const std::string cfg = out_dir + "/" + name + ".json";
      std::ofstream(cfg) << relay_config(name, via_proxy, hook_proxy.port(), command_log);
      const std::string log = out_dir + "/" + name + ".log";
      std::ofstream(log, std::ios::trunc).close();
      relays.push_back(std::make_unique<Relay>(bin, name, via_proxy, cfg, log));
    }

    ProducerOptions po;
    po.url = direct;
    po.events_per_s = prof.rate;
    po.events_per_tx = prof.per_tx;
    po.keys = prof.keys;
    po.connections = prof.connections;
    po.log_path = out_dir + "/producer.log";
    Producer producer(po);
    producer.start();

    // Waits until an event committed after now is delivered; returns the ms it took.
    auto fresh_delivery = [&](milliseconds limit) -> int64_t {
      const auto from = Clock::now();
      const int64_t after = producer.last_committed();
      const bool ok = pgrelay::test::eventually([&] { return recorder.max_delivered_seq() > after; }, limit);
      return ok ? std::chrono::duration_cast<milliseconds>(Clock::now() - from).count() : -1;
    };
    // Recovery: from the fault being lifted until every relay in `who` delivers
    // again (a backlog does not count against it, unlike end-to-end latency).
    auto recovery = [&](const std::vector<std::string>& who, milliseconds limit) -> int64_t {
      const int64_t lifted = now_ms();
      const bool ok = pgrelay::test::eventually(
          [&] {
            for (const auto& r : who) {
              const int64_t t = recorder.last_ok_ms(r);
              if (t < lifted) return false;
            }
            return true;
          },
          limit);
      return ok ? now_ms() - lifted : -1;
    };
    auto in_flight = [&](const std::string& where) {
      try {
        return scalar_at(direct, "SELECT count(*) FROM pgrelay.db_events WHERE status = 'processing'" + where);
      } catch (const std::exception&) {
        return int64_t{-1};
      }
    };

    say("warming up");
    if (fresh_delivery(milliseconds(60000)) < 0) throw std::runtime_error("no event delivered within 60 s of start");

    std::vector<Phase> phases;
    std::string phase_note;  // what an inject or lift step saw, for the phase's report line
    // `setup` runs first, inside the phase's window: what it produces counts there.
    auto phase = [&](
                     const std::string& name, const std::string& where, const std::function<void()>& inject,
                     const std::function<void()>& lift, milliseconds hold,
                     const std::vector<std::string>& who = {"r1", "r2"}, const std::function<void()>& setup = [] {}) {
      Phase p;
      p.name = name;
      p.start_ms = now_ms();
      setup();
      p.in_flight_bound = in_flight(where);
      inject();
      std::this_thread::sleep_for(hold);
      lift();
      p.end_ms = now_ms();
      p.recovery_ms = recovery(who, milliseconds(120000));
      p.note = phase_note;
      phase_note.clear();
      say(name + ": in flight " + std::to_string(p.in_flight_bound) + ", recovered in " +
          std::to_string(p.recovery_ms) + " ms" + (p.note.empty() ? "" : "; " + p.note));
      phases.push_back(p);
      std::this_thread::sleep_for(prof.between);
    };
    auto nothing = [] {};
    // A backlog at once, and a wait (at most 5 s) until the relays (`where`) hold
    // at least `events` of it: so that a fault finds many deliveries and acks under
    // way rather than the handful that a steady flow keeps in flight.
    auto backlog = [&](int events, const std::string& where, int64_t held) {
      return [&, events, where, held] {
        producer.burst(events);
        pgrelay::test::eventually([&] { return in_flight(where) >= held; }, milliseconds(5000));
      };
    };
    auto terminate = [&](const std::string& app) {
      return [&, app] {
        scalar_at(direct, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '" +
                              app + "'");
      };
    };

    phases.push_back(Phase{"baseline", now_ms(), now_ms(), 0, 0, ""});
    std::this_thread::sleep_for(prof.between * 2);
    for (int i = 0; i < prof.kills; ++i) {
      Relay& victim = *relays[static_cast<size_t>(i) % relays.size()];
      phase(
          "kill -9 " + victim.name(), " AND lease_owner = '" + victim.name() + "'", [&] { victim.stop(SIGKILL); },
          [&] { victim.start(); }, milliseconds(500), {victim.name()});
    }
    for (int i = 0; i < prof.pg_restarts; ++i)
      phase(
          "pg restart immediate", "", [&] { cluster.restart_immediate(); }, nothing, milliseconds(0));
    // The server away for longer than the lease while the relays hold outcomes and
    // sql work waiting for their ack (a backlog first, so they hold many): when it
    // returns every lease has run out, and each relay may claim its own events
    // again.
    for (int i = 0; i < prof.pg_outages; ++i) {
      phase(
          "pg down > lease", "",
          [&] {
            const bool acking = sql_ack_running_within(direct, milliseconds(2000));
            cluster.stop_server();
            phase_note = std::string(acking ? "stopped while an sql ack ran" : "no sql ack seen running") + ", down " +
                         std::to_string((kLease + milliseconds(1500)).count()) + " ms";
          },
          [&] { cluster.start_server(); }, kLease + milliseconds(1500), {"r1", "r2"}, backlog(prof.burst, "", 48));
    }
    // One relay frozen past its lease while the other runs on: the other claims the
    // frozen relay's events once their leases run out, and the frozen relay's
    // outcomes for them, arriving late, must change nothing.
    for (int i = 0; i < prof.stalls; ++i) {
      Relay& victim = *relays[static_cast<size_t>(i) % relays.size()];
      const std::string owned = " AND lease_owner = '" + victim.name() + "'";
      std::string held;
      phase(
          "stall " + victim.name() + " > lease", owned,
          [&] {
            held = text(direct,
                        "SELECT coalesce(string_agg(id::text, ','), '') FROM pgrelay.db_events "
                        "WHERE status = 'processing'" +
                            owned);
            victim.signal(SIGSTOP);
          },
          [&] {
            if (!held.empty()) {
              const int64_t taken =
                  scalar_at(direct, "SELECT count(*) FROM pgrelay.db_events WHERE id IN (" + held +
                                        ") AND (status = 'done' OR lease_owner <> '" + victim.name() + "')");
              phase_note = std::to_string(taken) + " of " +
                           std::to_string(std::count(held.begin(), held.end(), ',') + 1) +
                           " held events taken over or done while it was frozen";
            }
            victim.signal(SIGCONT);
          },
          kLease + milliseconds(1500), {"r1", "r2"}, backlog(prof.burst, owned, 12));
    }
    for (int i = 0; i < prof.terminations; ++i) {
      phase("terminate listener", "", terminate("pgrelay-listener"), nothing, milliseconds(0));
      phase("terminate claimer", "", terminate("pgrelay-claimer"), nothing, milliseconds(0));
    }
    for (int i = 0; i < prof.proxy_rounds; ++i) {
      phase(
          "db proxy stall", "", [&] { db_proxy.set_mode(ProxyMode::stall); },
          [&] { db_proxy.set_mode(ProxyMode::pass); }, prof.stall);
      phase(
          "db proxy drop", "", [&] { db_proxy.set_mode(ProxyMode::drop); }, [&] { db_proxy.set_mode(ProxyMode::pass); },
          milliseconds(1000));
      phase(
          "db proxy reset", "", [&] { db_proxy.set_mode(ProxyMode::reset); },
          [&] { db_proxy.set_mode(ProxyMode::pass); }, milliseconds(2000));
    }
    phase(
        "webhook 500s", "", [&] { recorder.set_mode(HookMode::error500); }, [&] { recorder.set_mode(HookMode::ok); },
        prof.webhook_fault);
    phase(
        "webhook hangs", "", [&] { recorder.set_mode(HookMode::hang); }, [&] { recorder.set_mode(HookMode::ok); },
        prof.webhook_fault);
    phase(
        "webhook gone", "", [&] { hook_proxy.set_mode(ProxyMode::reset); },
        [&] { hook_proxy.set_mode(ProxyMode::pass); }, prof.webhook_gone);

    say("stopping the producer and draining");
    producer.stop();
    const auto drain_from = Clock::now();
    auto next_progress_at = drain_from + std::chrono::seconds(10);
    const bool drained = pgrelay::test::eventually(
        [&] {
          try {
            if (Clock::now() >= next_progress_at) {
              next_progress_at += std::chrono::seconds(10);
              say("still draining: " + text(direct,
                                            "SELECT coalesce(string_agg(status || ' ' || n, ', '), '') FROM ("
                                            "SELECT status, count(*) AS n FROM pgrelay.db_events "
                                            "WHERE status <> 'done' GROUP BY status) s"));
            }
            return scalar_at(direct,
                             "SELECT count(*) FROM pgrelay.db_events "
                             "WHERE status IN ('pending', 'processing', 'blocked', 'paused', 'unrouted')") == 0;
          } catch (const std::exception&) {
            return false;
          }
        },
        prof.drain);
    say(std::string(drained ? "drained" : "NOT drained") + " in " +
        std::to_string(std::chrono::duration_cast<milliseconds>(Clock::now() - drain_from).count()) + " ms");
    if (!drained) write_stuck_keys(direct, out_dir + "/stuck.txt");
    std::this_thread::sleep_for(milliseconds(1000));
    for (auto& r : relays) r->stop(SIGTERM);

    const auto deliveries = recorder.deliveries();
    {
      std::ofstream f(out_dir + "/deliveries.log");
      for (const auto& d : deliveries)
        f << d.ms << ' ' << d.relay << ' ' << d.seq << ' ' << d.event_id << ' ' << d.attempt << ' ' << d.key << ' '
          << d.status << ' ' << d.wall_us << '\n';
    }
    RunRecord record;
    record.produced = producer.produced();
    record.deliveries = deliveries;
    record.command_runs = read_command_runs(command_log);
    record.phases = phases;
    for (const std::string name : {"r1", "r2"}) {
      std::ifstream in(out_dir + "/" + name + ".log");
      for (std::string line; std::getline(in, line);) {
        if (line.find("bookkeeping error") != std::string::npos) record.relay_guard_errors++;
      }
    }
    const Summary s = check(record, direct);
    std::ostringstream report;
    report << "pgrelay fault run, profile " << prof.name << " (" << prof.rate << " events/s target from "
           << prof.connections << " connections, 2 relays, lease " << kLease.count() << " ms)\n";
    print_summary(s, report);
    std::ofstream(out_dir + "/summary.txt") << report.str();
    std::cout << report.str() << std::flush;
    return s.ok() ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "fault_run: " << e.what() << "\n";
    return 1;
  }
}
