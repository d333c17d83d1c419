// The admin server over real HTTP against a real database: authentication of
// admin actions, hostile clients (oversized requests, slowloris, too many
// connections), and the admin actions themselves.
#include <doctest/doctest.h>

#include <signal.h>

#include <thread>
#include <vector>

#include "core/metrics.hpp"
#include "http/admin_server.hpp"
#include "support/child_process.hpp"
#include "support/http_get.hpp"
#include "support/temp_config.hpp"
#include "support/test_db.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

AdminServerOptions server_options(const TestDb& db, const std::string& token = "s3cret-token") {
  AdminServerOptions o;
  o.listen = "127.0.0.1:0";
  o.token = token;
  o.database_url = db.url();
  o.sample_interval_ms = 200;
  return o;
}

std::string bearer(const std::string& token) { return "Authorization: Bearer " + token + "\r\n"; }

}  // namespace

TEST_CASE("admin endpoints answer 401 without a token or with a wrong one, and 404 when no token is configured") {
  TestDb db;
  Metrics metrics;
  AdminServer server(server_options(db), &metrics, {});
  server.start();
  const uint16_t port = server.port();
  REQUIRE(port != 0);
  for (const char* path : {"/admin/pause", "/admin/resume", "/admin/dead/retry", "/admin/dead/purge", "/admin/replay"}) {
    CAPTURE(path);
    CHECK(http_request(port, "POST", path, R"({"type":"a.b"})").status == 401);
    CHECK(http_request(port, "POST", path, R"({"type":"a.b"})", bearer("wrong-token")).status == 401);
    CHECK(http_request(port, "POST", path, R"({"type":"a.b"})", bearer("s3cret-token-but-longer")).status == 401);
    CHECK(http_request(port, "POST", path, R"({"type":"a.b"})", "Authorization: Basic czNjcmV0LXRva2Vu\r\n").status == 401);
  }
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.paused_types") == 0);
  const auto ok = http_request(port, "POST", "/admin/pause", R"({"type":"a.b","reason":"test"})", bearer("s3cret-token"));
  CHECK(ok.status == 200);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.paused_types WHERE event_type = 'a.b'") == 1);
  // Health stays public.
  CHECK(http_get(port, "/healthz").status == 200);
  server.stop();

  AdminServer open(server_options(db, ""), &metrics, {});
  open.start();
  const auto disabled = http_request(open.port(), "POST", "/admin/pause", R"({"type":"x"})", bearer("anything"));
  CHECK(disabled.status == 404);
  CHECK(disabled.body.find("admin.token") != std::string::npos);
}

TEST_CASE("the token never appears in the logs of a running relay") {
  TestDb db;
  TempConfig cfg("{\"database\":{\"url\":\"" + db.url() +
                      "\"},\"admin\":{\"listen\":\"127.0.0.1:0\",\"token_env\":\"PGRELAY_TEST_TOKEN\"},"
                      "\"log\":{\"level\":\"debug\",\"format\":\"json\"},"
                      "\"handlers\":{\"out\":{\"type\":\"stdout\"}},\"routes\":[{\"match\":\"*\",\"handlers\":[\"out\"]}]}");
  ChildProcess p({PGRELAY_BIN, "-c", cfg.path, "run"}, {{"PGRELAY_TEST_TOKEN", "tok-very-secret-4711"}});
  REQUIRE(eventually([&] { return p.err().find("admin server listening") != std::string::npos; }, seconds(10)));
  const std::string line = p.err().substr(p.err().find("admin server listening"));
  const auto at = line.find("\"port\":");
  REQUIRE(at != std::string::npos);
  const auto port = static_cast<uint16_t>(std::stoi(line.substr(at + 7)));
  CHECK(http_request(port, "POST", "/admin/pause", R"({"type":"t.x"})", bearer("wrong")).status == 401);
  CHECK(http_request(port, "POST", "/admin/pause", R"({"type":"t.x"})", bearer("tok-very-secret-4711")).status == 200);
  p.signal(SIGTERM);
  CHECK(p.wait(seconds(15)) == 0);
  CHECK(p.err().find("tok-very-secret-4711") == std::string::npos);
  CHECK(p.err().find("admin action") != std::string::npos);
}

TEST_CASE("oversized headers and bodies are refused and the server keeps answering") {
  TestDb db;
  AdminServer server(server_options(db), nullptr, {});
  server.start();
  const uint16_t port = server.port();
  const std::string big(9000, 'a');
  const auto h = http_raw(port, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n");
  CHECK((h.status == 431 || h.status == 0));
  const std::string body(70 * 1024, ' ');
  const auto b = http_request(port, "POST", "/admin/pause", body, bearer("s3cret-token"));
  CHECK((b.status == 413 || b.status == 0));
  CHECK(http_raw(port, "GARBAGE\r\n\r\n").status == 400);
  CHECK(http_get(port, "/healthz").status == 200);
  CHECK(http_get(port, "/nope").status == 404);
  CHECK(http_request(port, "POST", "/healthz").status == 405);
}

TEST_CASE("a slowloris client is cut off at the read timeout and the connection cap does not lock the server out") {
  TestDb db;
  AdminServerOptions o = server_options(db);
  o.read_timeout_ms = 800;
  o.max_connections = 4;
  AdminServer server(o, nullptr, {});
  server.start();
  const uint16_t port = server.port();
  // Fill every slot with clients that trickle a header byte by byte and never finish.
  std::vector<int> slow;
  for (int i = 0; i < 4; ++i) {
    const int fd = http_connect(port, 5000);
    REQUIRE(fd >= 0);
    send_all(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    slow.push_back(fd);
  }
  std::this_thread::sleep_for(milliseconds(100));
  // The cap: a fifth connection is served; the slow client waiting longest is closed for it.
  CHECK(http_get(port, "/healthz").status == 200);
  const auto started = std::chrono::steady_clock::now();
  for (int round = 0; round < 15; ++round) {
    for (int fd : slow) send_all(fd, "X-Slow: 1\r\n");
    std::this_thread::sleep_for(milliseconds(100));
  }
  // Trickling did not extend the deadline: the server has closed them.
  for (int fd : slow) {
    char c;
    CHECK(::recv(fd, &c, 1, 0) <= 0);
    ::close(fd);
  }
  CHECK(std::chrono::steady_clock::now() - started < seconds(5));
  REQUIRE(eventually([&] { return http_get(port, "/healthz").status == 200; }, seconds(3)));
}

TEST_CASE("admin actions retry and purge dead letters, pause and resume types over HTTP") {
  TestDb db;
  AdminServer server(server_options(db), nullptr, {});
  server.start();
  const uint16_t port = server.port();
  const std::string auth = bearer("s3cret-token");
  db.exec("SELECT pgrelay.emit('d.one', '{}') FROM generate_series(1, 3)");
  db.exec("SELECT pgrelay.emit('d.two', '{}') FROM generate_series(1, 2)");
  db.exec("UPDATE pgrelay.db_events SET status = 'dead', finished_at = now(), last_error = 'boom ' || event_type");

  CHECK(http_request(port, "POST", "/admin/dead/retry", "{}", auth).status == 400);  // no filter, no "all"
  auto r = http_request(port, "POST", "/admin/dead/retry", R"({"type":"d.one"})", auth);
  CHECK(r.status == 200);
  CHECK(r.body.find("\"retried\":3") != std::string::npos);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'pending'") == 3);
  r = http_request(port, "POST", "/admin/dead/purge", R"({"error":"boom d.two"})", auth);
  CHECK(r.body.find("\"purged\":2") != std::string::npos);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'dead'") == 0);

  CHECK(http_request(port, "POST", "/admin/pause", R"({"type":"d.one"})", auth).status == 200);
  CHECK(http_request(port, "POST", "/admin/pause", R"({"type":42})", auth).status == 400);
  CHECK(http_request(port, "GET", "/admin/pause", "", auth).status == 405);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.paused_types") == 1);
  r = http_request(port, "POST", "/admin/resume", R"({"type":"d.one"})", auth);
  CHECK(r.body.find("\"was_paused\":true") != std::string::npos);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.paused_types") == 0);
}
