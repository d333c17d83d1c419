// The operator console in a real browser: Debian's chromium, driven by puppeteer-core
// (tests/node/console_check.js), against a real relay delivering to a real HTTP receiver.
#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <atomic>
#include <iostream>

#include "http/admin_server.hpp"
#include "support/child_process.hpp"
#include "support/http_get.hpp"
#include "support/http_receiver.hpp"
#include "support/recording_handler.hpp"
#include "support/test_db.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::seconds;

namespace {

const char* kToken = "console-test-token";

// The only reason to skip is a machine without node (as the CloudEvents check); a missing
// tests/node/node_modules is a failure to install.
bool node_available() {
  ChildProcess p({"node", "--version"});
  const auto code = p.wait(std::chrono::seconds(20));
  return code && *code == 0;
}

std::string str(const rapidjson::Value& v) { return v.IsString() ? v.GetString() : "<not a string>"; }

}  // namespace

TEST_CASE("the console finds a dead event and shows its attempts and retries it until it is delivered") {
  if (!node_available()) {
    std::cerr << "SKIPPED (console browser test): node is not installed\n";
    MESSAGE("skipped: node is not installed");
    return;
  }
  const std::string dir = std::string(PGRELAY_SOURCE_DIR) + "/tests/node";
  INFO("tests/node/node_modules is missing: run scripts/test, or npm ci in tests/node");
  REQUIRE(!read_file(dir + "/node_modules/puppeteer-core/package.json").empty());
  TestDb db;
  HttpReceiver rx;
  std::atomic<int> flaky{0};
  rx.respond_with([&](const ReceivedRequest& r) {
    if (r.body.find("\"type\":\"orders.flaky\"") == std::string::npos) return Reply::with_status(200, "ok");
    const int n = ++flaky;
    return n == 1   ? Reply::with_status(503, "try later")
           : n == 2 ? Reply::with_status(410, "gone")
                    : Reply::with_status(200);
  });
  Config c = test_config(db.url());
  HandlerConfig h;
  h.name = "billing";
  h.type = "webhook";
  h.url = rx.url();
  h.retry = RetryPolicy{5, 100, 200, 0.0};
  h.timeout_ms = 3000;
  c.handlers.push_back(h);
  c.routes.push_back(Route{"orders.*", {"billing"}});
  c.admin.listen = "127.0.0.1:0";
  c.admin.token = kToken;
  Relay relay(c);
  RelayThread t(relay);
  db.exec("SELECT pgrelay.emit('orders.paid', jsonb_build_object('n', g)) FROM generate_series(1, 12) g");
  const int64_t dead_id = db.scalar("SELECT pgrelay.emit('orders.flaky', '{}')");
  db.exec("SELECT pgrelay.emit('audit.logged', '{}')");  // no relay routes audit.*
  REQUIRE(eventually([&] { return db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'dead'") == 1; },
                     seconds(15)));
  REQUIRE(eventually([&] { return relay.admin_port() != 0; }, seconds(5)));
  const auto held = db.exec("SELECT http_status FROM pgrelay.attempts WHERE event_id = " + std::to_string(dead_id) +
                            " ORDER BY started_at");
  REQUIRE(held.size() == 2);

  ChildProcess node({"node", dir + "/console_check.js", "http://127.0.0.1:" + std::to_string(relay.admin_port()) + "/",
                     kToken, std::to_string(dead_id), "13"});
  const auto code = node.wait(seconds(90));
  INFO("console_check.js said: " << node.out() << node.err());
  REQUIRE(code.has_value());
  REQUIRE(*code == 0);
  rapidjson::Document seen;
  seen.Parse(node.out().c_str());
  REQUIRE(seen.IsObject());

  // The dead letter's row, and its page before the retry: the attempts the database holds.
  CHECK(str(seen["dead_row"][1]) == "orders.flaky");
  CHECK(str(seen["status_before"]) == "dead");
  const auto& before = seen["attempts_before"];
  REQUIRE(before.Size() == held.size());
  for (rapidjson::SizeType i = 0; i < before.Size(); ++i) {
    CAPTURE(i);
    CHECK(str(before[i]["answer"]) == "HTTP " + held[i][0].as<std::string>());
    CHECK(str(before[i]["handler"]) == "billing");
    CHECK(str(before[i]["attempt"]) == std::to_string(i + 1));
  }
  CHECK(str(before[0]["outcome"]) == "retry");
  CHECK(str(before[1]["outcome"]) == "dead");
  // Retried with the token and delivered: the third attempt answered 200.
  CHECK(str(seen["status_after"]) == "done");
  REQUIRE(seen["attempts_after"].Size() == 3);
  CHECK(str(seen["attempts_after"][2]) == "HTTP 200");
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.attempts WHERE event_id = " + std::to_string(dead_id) +
                  " AND outcome = 'ok' AND http_status = 200") == 1);
  CHECK(seen["dead_left"].GetInt() == 0);

  // The charts' data against the database: every event this relay delivered has its
  // successful attempt in the log, and nothing is due.
  const auto& last = seen["history_last"];
  CHECK(last["delivered_total"].GetInt64() ==
        db.scalar("SELECT count(*) FROM pgrelay.attempts WHERE outcome = 'ok' AND relay_id = '" + relay.id() + "'"));
  CHECK(last["backlog"].GetInt64() ==
        db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'pending' AND next_attempt_at <= now()"));
  CHECK(seen["chart_points"].GetInt() == seen["history_points"].GetInt());
  // The handler row, and the type no relay routes flagged.
  REQUIRE(seen["handlers"].Size() == 1);
  CHECK(str(seen["handlers"][0][0]) == "billing");
  REQUIRE(seen["unrouted"].Size() == 1);
  CHECK(str(seen["unrouted"][0]) == "audit.logged");
}

TEST_CASE("the console's JSON API answers only with the token and reads receipts and dead letters") {
  TestDb db;
  const int64_t id = db.scalar("SELECT pgrelay.emit('orders.paid', '{}', 'order:7')");
  db.exec("UPDATE pgrelay.db_events SET status = 'dead', last_error = 'HTTP 410: gone', finished_at = now()");
  db.exec("SELECT pgrelay.record_attempt_batches(ARRAY[" + std::to_string(id) +
          " >> 10], ARRAY[0], json_build_array(json_build_array(json_build_object('e', " + std::to_string(id) +
          ", 'h', 'billing', 'a', 1, 's', (extract(epoch FROM now()) * 1e6)::bigint, 'd', 12.5, 'o', 'dead', "
          "'st', 410, 'err', 'HTTP 410: gone', 'r', 'gone'))), 'r')");
  AdminServerOptions o;
  o.listen = "127.0.0.1:0";
  o.database_url = db.url();
  o.token = kToken;
  AdminServer server(o, nullptr, {});
  server.start();
  const std::string auth = std::string("Authorization: Bearer ") + kToken + "\r\n";
  for (const char* path : {"/admin/api/overview", "/admin/api/history", "/admin/api/dead", "/admin/api/event?id=1"}) {
    CAPTURE(path);
    CHECK(http_get(server.port(), path).status == 401);
    CHECK(http_request(server.port(), "GET", path, "", auth).status == 200);
  }
  CHECK(http_request(server.port(), "POST", "/admin/api/dead", "{}", auth).status == 405);
  const auto dead = http_request(server.port(), "GET", "/admin/api/dead?type=orders.%2A", "", auth);
  CHECK(dead.body.find("\"id\":" + std::to_string(id) + ",\"type\":\"orders.paid\"") != std::string::npos);
  CHECK(dead.body.find("\"last_error\":\"HTTP 410: gone\"") != std::string::npos);
  CHECK(http_request(server.port(), "GET", "/admin/api/dead?type=other.x", "", auth).body.find("\"dead\":[]") !=
        std::string::npos);
  const auto event = http_request(server.port(), "GET", "/admin/api/event?id=" + std::to_string(id), "", auth);
  CHECK(event.body.find("\"status\": \"dead\"") != std::string::npos);
  CHECK(event.body.find("\"http_status\": 410") != std::string::npos);
  CHECK(event.body.find("\"response_head\": \"gone\"") != std::string::npos);
  const auto found = http_request(server.port(), "GET", "/admin/api/events?key=order%3A7", "", auth);
  CHECK(found.body.find("\"id\":" + std::to_string(id)) != std::string::npos);
  CHECK(http_request(server.port(), "GET", "/admin/api/event", "", auth).status == 400);
  CHECK(http_get(server.port(), "/").body.find("<title>pgrelay console</title>") != std::string::npos);
}
