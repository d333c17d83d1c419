// The status page rendered by a real browser (headless Chromium): the backlog
// figure it shows must equal the database's count.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <regex>
#include <string>

#include <future>

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

TEST_CASE("the status page shows the database's backlog in headless Chromium") {
  const std::string chromium = find_chromium();
  if (chromium.empty()) {
    FAIL("chromium is not installed: install Debian's `chromium` package (scripts/test does, via scripts/lib.sh "
         "PACKAGES) to run the status page's browser test");
  }
  TestDb db;
  db.exec("SELECT pgrelay.emit('page.shown', '{}') FROM generate_series(1, 37)");
  db.exec("SELECT pgrelay.emit('page.later', '{}')");
  db.exec("UPDATE pgrelay.db_events SET next_attempt_at = now() + interval '1 hour' WHERE event_type = 'page.later'");
  db.exec("SELECT pgrelay.emit('page.dead', '{}') FROM generate_series(1, 2)");
  db.exec("UPDATE pgrelay.db_events SET status = 'dead', finished_at = now() WHERE event_type = 'page.dead'");
  const int64_t backlog = db.scalar(
      "SELECT count(*) FROM pgrelay.db_events WHERE status IN ('pending', 'processing') AND next_attempt_at <= now()");
  REQUIRE(backlog == 37);

  AdminServerOptions o;
  o.listen = "127.0.0.1:0";
  o.database_url = db.url();
  o.sample_interval_ms = 500;
  o.handlers = {"webhook-a"};
  AdminServer server(o, nullptr, {"relay-under-test", "poll", {}, {}, {}});
  server.start();
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/";
  REQUIRE(http_get(server.port(), "/").body.find("<title>pgrelay status</title>") != std::string::npos);

  // Wait for the script to fetch /status.json and render the number (up to ~30 s).
  const std::regex backlog_re(R"re(id="backlog">([0-9]+)<)re");
  const std::regex dead_re(R"re(id="dead">([0-9]+)<)re");
  std::string dom, shown, dead;
  const bool rendered = eventually(
      [&] {
        dom = dump_dom(chromium, url);
        std::smatch m;
        if (!std::regex_search(dom, m, backlog_re)) return false;
        shown = m[1];
        if (std::regex_search(dom, m, dead_re)) dead = m[1];
        return true;
      },
      seconds(30));
  INFO("rendered DOM: " << dom.substr(0, 3000));
  REQUIRE(rendered);
  CHECK(shown == std::to_string(backlog));
  CHECK(dead == "2");
  CHECK(dom.find("webhook-a") != std::string::npos);
  CHECK(dom.find("relay-under-test") != std::string::npos);
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
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/";
  const std::string breaker = "http://127.0.0.1:" + std::to_string(dead_port) + ": open (2 failures)";
  std::string dom;
  const bool rendered = eventually(
      [&] {
        dom = dump_dom(chromium, url);
        return dom.find("billing") != std::string::npos && dom.find("paused (every type below user.)") != std::string::npos;
      },
      seconds(30));
  INFO("rendered DOM: " << dom.substr(0, 4000));
  REQUIRE(rendered);
  CHECK(dom.find(breaker) != std::string::npos);
  CHECK(dom.find("<td>user.*</td>") != std::string::npos);
}
