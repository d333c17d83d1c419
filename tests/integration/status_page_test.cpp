// The status page rendered by a real browser (headless Chromium): every figure it
// shows must equal what the database (or this relay's counters) holds.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <regex>
#include <string>
#include <vector>

#include <future>

#include "core/metrics.hpp"
#include "handlers/webhook_handler.hpp"
#include "http/admin_server.hpp"
#include "support/child_process.hpp"
#include "support/http_get.hpp"
#include "support/http_receiver.hpp"
#include "support/test_db.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::seconds;

namespace {

std::string find_chromium() {
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return "";
}

// The rendered DOM of `url` after its scripts ran (a fresh profile each time).
std::string dump_dom(const std::string& chromium, const std::string& url) {
  char dir[] = "/tmp/pgrelay-chromium-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  const std::string cmd = "timeout 25 '" + chromium +
                          "' --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
                          "--disable-background-networking --disable-component-update --disable-sync "
                          "--disable-dev-shm-usage --virtual-time-budget=5000 --user-data-dir=" +
                          std::string(dir) + " --dump-dom '" + url + "' 2>/dev/null";
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    ::pclose(p);
  }
  const std::string rm = "rm -rf '" + std::string(dir) + "'";
  (void)std::system(rm.c_str());
  return out;
}

}  // namespace

namespace {

// The text of the element with this id in a rendered DOM, "" if absent.
std::string element_text(const std::string& dom, const std::string& id) {
  const std::regex re("id=\"" + id + "\">([^<]*)<");
  std::smatch m;
  return std::regex_search(dom, m, re) ? std::string(m[1]) : std::string();
}

// Whether the DOM has a table row starting with these cells, in order.
bool has_row(const std::string& dom, const std::vector<std::string>& cells) {
  std::string pattern = "<tr>";
  for (const auto& c : cells) pattern += "<td[^>]*>" + c + "</td>";
  return std::regex_search(dom, std::regex(pattern));
}

}  // namespace

TEST_CASE(
    "the status page shows the database's figures in headless Chromium: backlog, in flight, oldest wait, paused, dead, "
    "per type, relay, handler and this relay's throughput") {
  const std::string chromium = find_chromium();
  if (chromium.empty()) {
    FAIL(
        "chromium is not installed: install Debian's `chromium` package (scripts/test does, via scripts/lib.sh "
        "PACKAGES) to run the status page's browser test");
  }
  TestDb db;
  db.exec("SELECT pgrelay.emit('page.shown', '{}') FROM generate_series(1, 37)");
  // The oldest due event has waited 100 s.
  db.exec(
      "UPDATE pgrelay.db_events SET next_attempt_at = now() - interval '100 seconds' "
      "WHERE id = (SELECT min(id) FROM pgrelay.db_events)");
  db.exec("SELECT pgrelay.emit('page.later', '{}')");
  db.exec("UPDATE pgrelay.db_events SET next_attempt_at = now() + interval '1 hour' WHERE event_type = 'page.later'");
  db.exec("SELECT pgrelay.emit('page.dead', '{}') FROM generate_series(1, 2)");
  db.exec("UPDATE pgrelay.db_events SET status = 'dead', finished_at = now() WHERE event_type = 'page.dead'");
  // Three under another relay's live lease, four of a paused type set aside.
  db.exec(
      "INSERT INTO pgrelay.db_events (event_type, payload, status, attempts, next_attempt_at, lease_owner, "
      "claim_token) "
      "SELECT 'page.busy', '{}', 'processing', 1, now() + interval '1 hour', 'relay-b', 1 FROM generate_series(1, 3)");
  db.exec("INSERT INTO pgrelay.paused_types (event_type, reason) VALUES ('page.held', 'test')");
  db.exec(
      "INSERT INTO pgrelay.db_events (event_type, payload, status) SELECT 'page.held', '{}', 'paused' "
      "FROM generate_series(1, 4)");
  db.exec(
      "INSERT INTO pgrelay.relays (id, wake, listen_alive, in_flight, delivered) VALUES ('relay-b', 'notify', true, 3, "
      "12)");
  REQUIRE(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status IN ('pending', 'processing') "
                    "AND next_attempt_at <= now()") == 37);

  // This relay's own handler figures.
  Metrics metrics;
  for (int i = 0; i < 5; ++i) metrics.record_delivery("page.shown", "webhook-a", Metrics::Result::delivered, 0.004);
  for (int i = 0; i < 2; ++i) metrics.record_delivery("page.shown", "webhook-a", Metrics::Result::retried, 0.004);
  metrics.record_delivery("page.shown", "webhook-a", Metrics::Result::dead, 0.004);
  AdminServerOptions o;
  o.listen = "127.0.0.1:0";
  o.database_url = db.url();
  o.sample_interval_ms = 500;
  o.handlers = {"webhook-a"};
  // The relay delivers exactly 2,000 events per second of the server's clock, so the
  // throughput between any two samples is 2,000/s whatever their spacing.
  const auto delivering_since = std::chrono::steady_clock::now();
  const auto delivered_so_far = [delivering_since]() -> std::array<int64_t, 4> {
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - delivering_since);
    return {2 * ms.count(), 0, 0, 0};
  };
  AdminServer server(o, &metrics, {"relay-under-test", "poll", {}, {}, delivered_so_far});
  server.start();
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/status";
  REQUIRE(http_get(server.port(), "/status").body.find("<title>pgrelay status</title>") != std::string::npos);
  // Two samples (one interval) before the page is rendered, so the figure exists.
  REQUIRE(eventually(
      [&] {
        return http_get(server.port(), "/status.json").body.find("\"throughput_per_s\":0.000") == std::string::npos;
      },
      seconds(10)));

  // Wait for the script to fetch /status.json and render the numbers (up to ~30 s).
  std::string dom;
  const bool rendered = eventually(
      [&] {
        dom = dump_dom(chromium, url);
        return !element_text(dom, "backlog").empty() && element_text(dom, "backlog") != "…";
      },
      seconds(30));
  INFO("rendered DOM: " << dom.substr(0, 6000));
  REQUIRE(rendered);
  CHECK(element_text(dom, "backlog") == "37");
  CHECK(element_text(dom, "dead") == "2");
  CHECK(element_text(dom, "processing") == "3");
  CHECK(element_text(dom, "paused-backlog") == "4");
  const double oldest = std::stod("0" + element_text(dom, "oldest"));
  CHECK(oldest >= 100);
  CHECK(oldest < 160);
  CHECK(element_text(dom, "relay-id") == "relay-under-test (wake=poll)");
  // Per type: pending, processing, dead, paused.
  CHECK(has_row(dom, {"page.shown", "37", "0", "0"}));
  CHECK(has_row(dom, {"page.later", "1", "0", "0"}));
  CHECK(has_row(dom, {"page.busy", "0", "3", "0"}));
  CHECK(has_row(dom, {"page.dead", "0", "0", "2"}));
  CHECK(has_row(dom, {"page.held", "0", "0", "0", "paused"}));
  // Per relay: id, wake, LISTEN, in flight, delivered.
  CHECK(has_row(dom, {"relay-b", "notify", "alive", "3", "12"}));
  // Per handler: delivered, retried, dead, deferred.
  CHECK(has_row(dom, {"webhook-a", "5", "2", "1", "0"}));
  // 2,000/s, within the rounding and scheduling jitter of two samples ~500 ms apart
  // (the probe is read just after the sample's time is taken).
  const double throughput = std::stod("0" + element_text(dom, "throughput"));
  CHECK(throughput > 1900);
  CHECK(throughput < 2100);
}

TEST_CASE("the status page shows an open circuit breaker and a paused prefix pattern in headless Chromium") {
  const std::string chromium = find_chromium();
  if (chromium.empty()) FAIL("chromium is not installed: install Debian's `chromium` package");
  TestDb db;
  db.exec("INSERT INTO pgrelay.paused_types (event_type, reason) VALUES ('user.*', 'mailer down')");
  // A real webhook handler whose endpoint refuses connections: two failures open its breaker.
  const uint16_t dead_port = closed_port();
  HandlerConfig cfg;
  cfg.name = "billing";
  cfg.type = "webhook";
  cfg.url = "http://127.0.0.1:" + std::to_string(dead_port) + "/hook";
  cfg.connect_timeout_ms = 500;
  cfg.breaker.failures = 2;
  cfg.breaker.cooldown_ms = 3600000;
  WebhookHandler hook(cfg);
  for (int64_t id = 1; id <= 2; ++id) {
    auto e = std::make_shared<Event>();
    e->id = id;
    e->type = "t";
    e->json = "{}";
    auto done = std::make_shared<std::promise<Outcome>>();
    auto f = done->get_future();
    hook.deliver(e, [done](Outcome o) { done->set_value(std::move(o)); });
    REQUIRE(f.wait_for(seconds(10)) == std::future_status::ready);
  }
  AdminServerOptions o;
  o.listen = "127.0.0.1:0";
  o.database_url = db.url();
  o.sample_interval_ms = 500;
  o.handlers = {"billing"};
  AdminServer server(o, nullptr, {"relay-under-test", "poll", {}, {}, {}});
  server.start();
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/status";
  const std::string breaker = "http://127.0.0.1:" + std::to_string(dead_port) + ": open (2 failures)";
  std::string dom;
  const bool rendered = eventually(
      [&] {
        dom = dump_dom(chromium, url);
        return dom.find("billing") != std::string::npos &&
               dom.find("paused (every type below user.)") != std::string::npos;
      },
      seconds(30));
  INFO("rendered DOM: " << dom.substr(0, 4000));
  REQUIRE(rendered);
  CHECK(dom.find(breaker) != std::string::npos);
  CHECK(dom.find("<td>user.*</td>") != std::string::npos);
}
