// The admin server over real HTTP against a real database: authentication of
// admin actions, hostile clients (oversized requests, slowloris, too many
// connections), and the admin actions themselves.
#include <doctest/doctest.h>

#include <signal.h>

#include <cstdio>
#include <thread>
#include <vector>

#include "core/metrics.hpp"
#include "http/admin_server.hpp"
#include "support/child_process.hpp"
#include "support/http_get.hpp"
#include "support/http_receiver.hpp"
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
  for (const char* path :
       {"/admin/pause", "/admin/resume", "/admin/dead/retry", "/admin/dead/purge", "/admin/replay"}) {
    CAPTURE(path);
    CHECK(http_request(port, "POST", path, R"({"type":"a.b"})").status == 401);
    CHECK(http_request(port, "POST", path, R"({"type":"a.b"})", bearer("wrong-token")).status == 401);
    CHECK(http_request(port, "POST", path, R"({"type":"a.b"})", bearer("s3cret-token-but-longer")).status == 401);
    CHECK(http_request(port, "POST", path, R"({"type":"a.b"})", "Authorization: Basic czNjcmV0LXRva2Vu\r\n").status ==
          401);
  }
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.paused_types") == 0);
  const auto ok = http_request(port, "POST", "/admin/pause", R"({"type":"a.b","reason":"test","force":true})",
                               bearer("s3cret-token"));
  CHECK(ok.status == 200);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.paused_types WHERE event_type = 'a.b' AND paused_by = 'console'") == 1);
  CHECK(http_request(port, "POST", "/admin/pause", R"({"type":"a.c","by":"bob","force":true})", bearer("s3cret-token"))
            .status == 200);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.paused_types WHERE event_type = 'a.c' AND paused_by = 'bob'") == 1);
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
  CHECK(http_request(port, "POST", "/admin/pause", R"({"type":"t.x","force":true})", bearer("tok-very-secret-4711"))
            .status == 200);
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

namespace {

// Opens a connection whose receive buffer is tiny, pipelines `requests` GET /
// requests on it and never reads: the server's answers pile up unread.
int pipelining_non_reader(uint16_t port, int requests) {
  const int fd = http_connect(port, 5000, 1024);
  if (fd < 0) return -1;
  std::string burst;
  for (int i = 0; i < requests; ++i) burst += "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  ::send(fd, burst.data(), burst.size(), MSG_NOSIGNAL | MSG_DONTWAIT);  // what fits; the rest does not matter
  return fd;
}

// Every status line in what the server sent before closing.
std::vector<int> statuses_in(const std::string& raw) {
  std::vector<int> out;
  for (size_t at = raw.find("HTTP/1.1 "); at != std::string::npos; at = raw.find("HTTP/1.1 ", at + 1)) {
    out.push_back(std::stoi(raw.substr(at + 9, 3)));
  }
  return out;
}

std::string send_and_read_all(uint16_t port, const std::string& request) {
  const int fd = http_connect(port, 3000);
  REQUIRE(fd >= 0);
  send_all(fd, request);
  std::string raw;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) raw.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return raw;
}

}  // namespace

TEST_CASE("80 clients that pipeline GET / and never read do not lock /healthz out") {
  TestDb db;
  AdminServerOptions o = server_options(db);
  REQUIRE(o.max_connections == 64);
  AdminServer server(o, nullptr, {});
  server.start();
  const uint16_t port = server.port();
  std::vector<int> hogs;
  for (int i = 0; i < 80; ++i) {
    const int fd = pipelining_non_reader(port, 400);
    if (fd >= 0) hogs.push_back(fd);
  }
  CHECK(hogs.size() == 80);
  std::this_thread::sleep_for(milliseconds(500));  // their answers fill every buffer on the way
  int answered_in_time = 0;
  const int probes = 24;
  for (int i = 0; i < probes; ++i) {
    const auto start = std::chrono::steady_clock::now();
    const int fd = http_connect(port, 1000);
    HttpReply r;
    if (fd >= 0 && send_all(fd, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"))
      r = read_reply(fd);
    if (fd >= 0) ::close(fd);
    const bool in_time = std::chrono::steady_clock::now() - start < seconds(1);
    answered_in_time += r.status == 200 && in_time;
    // A liveness probe every 100 ms, while the hogs keep their connections.
    std::this_thread::sleep_for(milliseconds(100));
  }
  CHECK(answered_in_time == probes);
  for (int fd : hogs) ::close(fd);
}

TEST_CASE("a request with an unknown or repeated transfer coding gets one 400 and the connection closes") {
  TestDb db;
  AdminServer server(server_options(db), nullptr, {});
  server.start();
  const uint16_t port = server.port();
  const std::string smuggled = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  for (const std::string te :
       {"Transfer-Encoding: xchunked\r\n", "Transfer-Encoding: gzip\r\n", "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: gzip, chunked\r\n", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n"}) {
    CAPTURE(te);
    const std::string raw =
        send_and_read_all(port, "POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + te + "\r\n" + smuggled);
    CHECK(statuses_in(raw) == std::vector<int>{400});
  }
  CHECK(send_and_read_all(port, "POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: xchunked\r\n\r\n")
            .find("bad request framing: Transfer-Encoding must be \"chunked\" alone") != std::string::npos);
  // HTTP/1.0 has no transfer codings at all.
  CHECK(statuses_in(send_and_read_all(port, "POST /healthz HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
                                                smuggled)) == std::vector<int>{400});
  // A plain chunked body is still read as one request.
  const std::string body = R"({"type":"te.ok","force":true})";
  char size[16];
  std::snprintf(size, sizeof size, "%zx", body.size());
  const std::string raw = send_and_read_all(
      port, "POST /admin/pause HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + bearer("s3cret-token") +
                "Transfer-Encoding: chunked\r\n\r\n" + size + "\r\n" + body + "\r\n0\r\n\r\n");
  CHECK(statuses_in(raw) == std::vector<int>{200});
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.paused_types WHERE event_type = 'te.ok'") == 1);
}

TEST_CASE("a NUL byte or invalid UTF-8 in an admin filter or name is refused with 400 naming the field") {
  TestDb db;
  AdminServer server(server_options(db), nullptr, {});
  server.start();
  const uint16_t port = server.port();
  const std::string auth = bearer("s3cret-token");
  db.exec("SELECT pgrelay.emit('nul.victim', '{}') FROM generate_series(1, 4)");
  db.exec("UPDATE pgrelay.db_events SET status = 'dead', finished_at = now(), last_error = 'boom'");
  struct Case {
    const char* path;
    std::string body;
    const char* field;
  };
  const std::vector<Case> cases = {
      {"/admin/dead/purge", R"({"error":"\u0000"})", R"(\"error\")"},
      {"/admin/dead/purge", R"({"type":"nul.victim\u0000suffix"})", R"(\"type\")"},
      {"/admin/dead/retry", R"({"error":"\u0000"})", R"(\"error\")"},
      {"/admin/dead/retry", R"({"key":"k\u0000"})", R"(\"key\")"},
      {"/admin/pause", R"({"type":"nul.victim\u0000suffix"})", R"(\"type\")"},
      {"/admin/pause", R"({"type":"nul.victim","reason":"a\u0000b"})", R"(\"reason\")"},
      {"/admin/resume", R"({"type":"nul.victim\u0000"})", R"(\"type\")"},
      {"/admin/replay", R"({"type":"\u0000"})", R"(\"type\")"},
      {"/admin/dead/purge", "{\"error\":\"\xff\xfe\"}", R"(\"error\")"},
      {"/admin/pause", "{\"type\":\"nul.victim\xc3\"}", R"(\"type\")"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.path);
    CAPTURE(c.body);
    const auto r = http_request(port, "POST", c.path, c.body, auth);
    CHECK(r.status == 400);
    CHECK(r.body.find(c.field) != std::string::npos);
    CHECK((r.body.find("NUL") != std::string::npos || r.body.find("UTF-8") != std::string::npos));
  }
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status = 'dead'") == 4);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.paused_types") == 0);
}

TEST_CASE("a Host that is not this server is refused, so DNS rebinding cannot read the admin pages") {
  TestDb db;
  AdminServerOptions o = server_options(db, "");
  o.allowed_hosts = {"pgrelay.internal"};
  AdminServer server(o, nullptr, {});
  server.start();
  const uint16_t port = server.port();
  auto get_with_host = [&](const std::string& path, const std::string& host) {
    return http_raw(port, "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
  };
  for (const char* path : {"/metrics", "/status.json", "/"}) {
    CAPTURE(path);
    const auto refused = get_with_host(path, "attacker.example:" + std::to_string(port));
    CHECK(refused.status == 403);
    CHECK(refused.body.find("admin.allowed_hosts") != std::string::npos);
    CHECK(refused.body.find("pgrelay_") == std::string::npos);
    CHECK(get_with_host(path, "127.0.0.1:" + std::to_string(port)).status == 200);
    CHECK(get_with_host(path, "localhost:" + std::to_string(port)).status == 200);
    CHECK(get_with_host(path, "pgrelay.internal:" + std::to_string(port)).status == 200);
  }
  // Probes answer whatever name they were sent to.
  CHECK(get_with_host("/healthz", "attacker.example").status == 200);
  const int ready = get_with_host("/readyz", "attacker.example").status;
  CHECK((ready == 200 || ready == 503));  // an answer, whichever it is: not refused, not silence
}

TEST_CASE("refused requests are logged once per interval with a count, not once each") {
  TestDb db;
  const uint16_t port = closed_port();
  TempConfig cfg(
      "{\"database\":{\"url\":\"" + db.url() + "\"},\"admin\":{\"listen\":\"127.0.0.1:" + std::to_string(port) +
      "\",\"token_env\":\"PGRELAY_TEST_TOKEN\"},\"log\":{\"format\":\"json\"},"
      "\"handlers\":{\"out\":{\"type\":\"stdout\"}},\"routes\":[{\"match\":\"zz.*\",\"handlers\":[\"out\"]}]}");
  ChildProcess p({PGRELAY_BIN, "-c", cfg.path, "run"}, {{"PGRELAY_TEST_TOKEN", "tok"}});
  REQUIRE(eventually([&] { return http_get(port, "/healthz").status == 200; }, seconds(20)));
  for (int i = 0; i < 100; ++i) {
    CHECK(http_request(port, "POST", "/admin/pause", R"({"type":"a.b"})", bearer("wrong")).status == 401);
    CHECK(http_raw(port, "GET /metrics HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n").status == 403);
  }
  p.signal(SIGTERM);
  CHECK(p.wait(seconds(15)) == 0);
  auto lines_with = [&](const std::string& text) {
    int n = 0;
    const std::string err = p.err();
    for (size_t at = err.find(text); at != std::string::npos; at = err.find(text, at + 1)) ++n;
    return n;
  };
  // The first of each kind is logged at once; the rest of a burst shorter than the interval stays silent.
  CHECK(lines_with("refused requests without a valid bearer token") == 1);
  CHECK(lines_with("refused requests for a Host that is not this server") == 1);
  CHECK(p.err().find("\"count\":1") != std::string::npos);
}

TEST_CASE("admin pause stores a prefix pattern as written and refuses an exact type nothing has used unless forced") {
  TestDb db;
  AdminServer server(server_options(db), nullptr, {});
  server.start();
  const uint16_t port = server.port();
  const std::string auth = bearer("s3cret-token");
  db.exec("SELECT pgrelay.emit('user.signed_up', '{}')");
  auto r = http_request(port, "POST", "/admin/pause", R"({"type":"user.*"})", auth);
  CHECK(r.status == 200);
  CHECK(r.body.find("\"pattern\":true") != std::string::npos);
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.paused_types WHERE event_type = 'user.*'") == 1);
  const auto unknown = http_request(port, "POST", "/admin/pause", R"({"type":"nosuch.type"})", auth);
  CHECK(unknown.status == 400);
  CHECK(unknown.body.find("not a known event type") != std::string::npos);
  CHECK(unknown.body.find("user.signed_up") != std::string::npos);  // the known types are listed
  CHECK(http_request(port, "POST", "/admin/pause", R"({"type":"nosuch.type","force":true})", auth).status == 200);
  CHECK(http_request(port, "POST", "/admin/pause", R"({"type":"*"})", auth).status == 400);
  const auto resumed = http_request(port, "POST", "/admin/resume", R"({"type":"user.signed_up"})", auth);
  CHECK(resumed.body.find("\"still_paused_by\":[\"user.*\"]") != std::string::npos);
  // Sampled gauges count the pattern's events as paused.
  REQUIRE(
      eventually([&] { return http_get(port, "/status.json").body.find("\"paused_backlog\":1") != std::string::npos; },
                 seconds(5)));
  CHECK(http_get(port, "/status.json").body.find("{\"type\":\"user.*\",\"pattern\":true") != std::string::npos);
}
