// Hostile and malformed input from tests/bad_input/: config files, command
// lines (SQL injection through emit, track and the dead-letter filters, invalid
// UTF-8, out-of-range numbers) and payloads. Each must get a clear error (exit 2
// when it is the user's input) and leave what pgrelay.db_events holds unchanged.
#include <doctest/doctest.h>
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <thread>

#include "handlers/http_client_pool.hpp"
#include "support/child_process.hpp"
#include "support/http_receiver.hpp"
#include "support/temp_config.hpp"
#include "support/test_db.hpp"

using namespace pgrelay::test;

namespace {

const std::string kCorpus = std::string(PGRELAY_SOURCE_DIR) + "/tests/bad_input";

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// "\xNN" escapes in a corpus line become that byte.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] == 'x') {
      out += static_cast<char>(std::stoi(s.substr(i + 2, 2), nullptr, 16));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<std::string> split(const std::string& line, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : line) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

// Everything an operator could lose: every row, every column that matters.
std::string events_checksum(const TestDb& db) {
  return pqxx::to_string(
      db.exec("SELECT count(*) || ':' || coalesce(md5(string_agg(concat_ws('|', id, event_type, key, "
              "payload::text, headers::text, status, attempts, last_error), ',' ORDER BY id)), '') "
              "FROM pgrelay.db_events")[0][0]);
}

// A few pending and dead events, with keys, for the filters to (not) match.
void seed(const TestDb& db) {
  db.exec("SELECT pgrelay.emit('orders.paid', jsonb_build_object('n', i), 'order:' || i) FROM generate_series(1, 5) i");
  db.exec("SELECT pgrelay.emit('users.signed_up', '{\"email\": \"a@b.c\"}', 'user:1')");
  db.exec(
      "UPDATE pgrelay.db_events SET status = 'dead', attempts = 10, last_error = 'HTTP 500 from hook', "
      "finished_at = now() WHERE id IN (SELECT id FROM pgrelay.db_events ORDER BY id LIMIT 2)");
}

std::vector<std::string> corpus_files(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n.size() > 5 && n.substr(n.size() - 5) == ".json") out.push_back(dir + "/" + n);
    }
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("every malformed config of the corpus is refused with exit 2 and a message naming the problem") {
  const auto files = corpus_files(kCorpus + "/config");
  REQUIRE(files.size() >= 15);
  for (const auto& path : files) {
    const std::string text = read_file(path);
    const std::string marker = "// expect: ";
    REQUIRE_MESSAGE(text.rfind(marker, 0) == 0, path << " must start with \"// expect: TEXT\"");
    const std::string expected = text.substr(marker.size(), text.find('\n') - marker.size());
    const RunResult r = run_pgrelay({"-c", path, "check-config"});
    INFO(path << "\nstderr: " << r.err);
    CHECK(r.code == 2);
    CHECK(contains(r.err, expected));
    CHECK(contains(r.err, "config"));
  }
}

TEST_CASE("a config over the size limit is refused before it is parsed") {
  std::string big = R"({"handlers": {"p": {"type": "stdout"}}, "routes": [], "x": ")";
  big += std::string(5 * 1024 * 1024, 'a');
  big += "\"}";
  TempConfig file(big);
  const RunResult r = run_pgrelay({"-c", file.path, "check-config"});
  CHECK(r.code == 2);
  CHECK(contains(r.err, "larger than"));
}

// RapidJSON's recursive parser overflowed the stack on a config nested ~2
// million levels deep (4 MB, under the size limit); every parse is iterative now.
TEST_CASE("a deeply nested config is refused, not a crash") {
  for (const size_t depth : {size_t{100000}, size_t{1900000}}) {
    TempConfig arrays(std::string(depth, '[') + std::string(depth, ']'));
    const RunResult r = run_pgrelay({"-c", arrays.path, "check-config"});
    INFO("depth " << depth << ": " << r.err);
    CHECK(r.code == 2);
  }
}

TEST_CASE("hostile command lines get a clear error and change no stored event") {
  TestDb db;
  seed(db);
  const std::string before = events_checksum(db);
  std::ifstream cases(kCorpus + "/cli.tsv");
  std::string line;
  int n = 0;
  while (std::getline(cases, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto fields = split(line, '\t');
    REQUIRE(fields.size() >= 3);
    std::vector<std::string> args{"-d", db.url()};
    for (size_t i = 2; i < fields.size(); ++i) args.push_back(unescape(fields[i]));
    const RunResult r = run_pgrelay(args);
    INFO("case: " << line << "\nexit " << r.code << "\nstdout: " << r.out.substr(0, 500)
                  << "\nstderr: " << r.err.substr(0, 500));
    CHECK(r.code == std::stoi(fields[0]));
    CHECK(contains(r.out + r.err, fields[1]));
    CHECK(r.err.size() < 4096);  // a clear message, not a dump
    CHECK(events_checksum(db) == before);
    CHECK(db.scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'pgrelay' AND tablename = 'db_events'") == 1);
    ++n;
  }
  CHECK(n >= 30);
}

TEST_CASE("tracking pgrelay's own tables is refused, so emit keeps working") {
  TestDb db;
  seed(db);
  const std::string before = events_checksum(db);
  const RunResult r = run_pgrelay({"-d", db.url(), "track", "pgrelay.db_events"});
  INFO(r.err);
  CHECK(r.code == 2);
  CHECK(contains(r.err, "pgrelay"));
  CHECK(events_checksum(db) == before);
  // Whatever track answered, producers must still be able to emit.
  const RunResult e = run_pgrelay({"-d", db.url(), "emit", "orders.paid", "{\"n\": 99}"});
  CHECK_MESSAGE(e.code == 0, e.err.substr(0, 300));
  run_pgrelay({"-d", db.url(), "untrack", "pgrelay.db_events"});
}

TEST_CASE("a 10 MB payload is stored and delivered whole") {
  TestDb db;
  std::string payload = "{\"blob\": \"" + std::string(10 * 1024 * 1024, 'x') + "\"}";
  const RunResult e = run_pgrelay({"-d", db.url(), "emit", "big.blob", "-"}, {}, payload);
  REQUIRE_MESSAGE(e.code == 0, e.err);
  char out[] = "/tmp/pgrelay-big-XXXXXX";
  ::close(::mkstemp(out));
  TempConfig cfg(R"({"handlers": {"keep": {"type": "command", "command": ["sh", "-c", "cat > )" + std::string(out) +
                 R"("], "timeout_ms": 60000}},
                    "routes": [{"match": "big.*", "handlers": ["keep"]}]})");
  const RunResult r = run_pgrelay({"-d", db.url(), "-c", cfg.path, "reconcile"});
  INFO(r.err.substr(0, 1000));
  CHECK(r.code == 0);
  // The handler got the event document with the blob in it, every byte of it and no more.
  const std::string got = read_file(out);
  const size_t blob = got.find("\"blob\"");
  REQUIRE(blob != std::string::npos);
  const size_t first_x = got.find('x', blob);
  REQUIRE(first_x != std::string::npos);
  const size_t after_x = got.find_first_not_of('x', first_x);
  CHECK(after_x - first_x == size_t{10} * 1024 * 1024);
  CHECK(got.substr(after_x, 1) == "\"");
  CHECK(got.size() < size_t{10} * 1024 * 1024 + 4096);  // the document around it, not a second copy
  // ...and the document ends as the claim wrote it: nothing cut off after the blob either.
  const std::string tail = got.substr(after_x);
  CHECK(tail.find("\"created_at\":") != std::string::npos);
  CHECK(tail.find("\"attempt\":1}") == tail.size() - std::string("\"attempt\":1}").size());
  CHECK(db.scalar("SELECT count(*) FROM pgrelay.db_events WHERE status IN ('pending', 'processing')") == 0);
  ::unlink(out);
}

TEST_CASE("a non-object payload cannot be stored even by SQL, so no handler ever sees one") {
  TestDb db;
  seed(db);
  const std::string before = events_checksum(db);
  for (const char* bad : {"'[1]'", "'\"s\"'", "'null'", "'42'"}) {
    CHECK_THROWS(db.exec(std::string("SELECT pgrelay.emit('orders.paid', ") + bad + "::jsonb)"));
  }
  CHECK_THROWS(db.exec("INSERT INTO pgrelay.db_events (event_type, payload) VALUES ('a.b', '[]')"));
  CHECK(events_checksum(db) == before);
}

// Found by tests/fuzz/fuzz_http_response: Beast 1.74's eager parser reserved the
// whole announced Content-Length (bad_alloc for 155 TB) before enforcing body_limit.
TEST_CASE("a webhook response announcing a huge body is truncated, not allocated") {
  namespace net = boost::asio;
  using tcp = net::ip::tcp;
  net::io_context server_io;
  tcp::acceptor acceptor(server_io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  const auto port = acceptor.local_endpoint().port();
  std::thread server([&] {
    tcp::socket s(server_io);
    acceptor.accept(s);
    net::streambuf request;
    boost::system::error_code ec;
    net::read_until(s, request, "\r\n\r\n", ec);
    const std::string reply = "HTTP/1.1 200 OK\r\nContent-Length: 155325583483838\r\n\r\n(((";
    net::write(s, net::buffer(reply), ec);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  });
  net::io_context io;
  std::string error;
  auto dest = pgrelay::HttpDestination::parse("http://127.0.0.1:" + std::to_string(port) + "/hook", &error);
  REQUIRE(dest.has_value());
  pgrelay::HttpClientPool pool(io, *dest, pgrelay::HttpClientOptions{});
  pgrelay::HttpRequest req;
  req.body = "{}";
  req.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::optional<pgrelay::HttpResult> result;
  net::post(io, [&] {
    pool.submit(req, [&](pgrelay::HttpResult r) {
      result = std::move(r);
      pool.close_all();
    });
  });
  CHECK_NOTHROW(io.run());
  server.join();
  REQUIRE(result.has_value());
  CHECK(result->failure == pgrelay::HttpResult::Failure::none);
  CHECK(result->status == 200);
  CHECK(result->body.size() <= 64 * 1024);
}

namespace {

// One raw HTTP exchange with the admin server: sends `request`, returns what came
// back before the server closed or 5 s passed ("" if it closed at once).
std::string raw_http(uint16_t port, const std::string& request) {
  namespace net = boost::asio;
  net::io_context io;
  net::ip::tcp::socket s(io);
  boost::system::error_code ec;
  s.connect({net::ip::make_address("127.0.0.1"), port}, ec);
  if (ec) return "";
  net::write(s, net::buffer(request), ec);
  struct timeval tv {
    5, 0
  };
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[256];
  const ssize_t n = ::recv(s.native_handle(), buf, sizeof buf, 0);  // plain recv: honours SO_RCVTIMEO
  return std::string(buf, n > 0 ? static_cast<size_t>(n) : 0);
}

}  // namespace

TEST_CASE("the admin server answers an oversized header with 431 and keeps serving /healthz") {
  TestDb db;
  const uint16_t port = closed_port();
  TempConfig cfg(R"({"admin": {"listen": "127.0.0.1:)" + std::to_string(port) +
                 R"("}, "handlers": {"p": {"type": "stdout"}}, "routes": [{"match": "zz.*", "handlers": ["p"]}]})");
  ChildProcess relay({PGRELAY_BIN, "-d", db.url(), "-c", cfg.path, "run"});
  const std::string healthz = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  REQUIRE(eventually([&] { return raw_http(port, healthz).rfind("HTTP/1.1 200", 0) == 0; }, std::chrono::seconds(30)));
  const std::string big = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(200000, 'a') + "\r\n\r\n";
  CHECK(raw_http(port, big).rfind("HTTP/1.1 431", 0) == 0);
  std::string many = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 20000; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  CHECK(raw_http(port, many + "\r\n").rfind("HTTP/1.1 431", 0) == 0);
  CHECK(raw_http(port, healthz).rfind("HTTP/1.1 200", 0) == 0);
}

// At the connection cap the admin server closes the connection that has waited
// longest for a request, so half-sent requests cannot lock a liveness probe out.
TEST_CASE("a slowloris of half-sent requests does not take /healthz down") {
  namespace net = boost::asio;
  TestDb db;
  const uint16_t port = closed_port();
  TempConfig cfg(R"({"admin": {"listen": "127.0.0.1:)" + std::to_string(port) +
                 R"("}, "handlers": {"p": {"type": "stdout"}}, "routes": [{"match": "zz.*", "handlers": ["p"]}]})");
  ChildProcess relay({PGRELAY_BIN, "-d", db.url(), "-c", cfg.path, "run"});
  const std::string healthz = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  REQUIRE(eventually([&] { return raw_http(port, healthz).rfind("HTTP/1.1 200", 0) == 0; }, std::chrono::seconds(30)));
  net::io_context io;
  std::vector<std::unique_ptr<net::ip::tcp::socket>> slow;
  for (int i = 0; i < 200; ++i) {
    auto s = std::make_unique<net::ip::tcp::socket>(io);
    boost::system::error_code ec;
    s->connect({net::ip::make_address("127.0.0.1"), port}, ec);
    if (ec) break;
    net::write(*s, net::buffer(std::string("GET /healthz HTTP/1.1\r\nHost: x\r\n")), ec);
    slow.push_back(std::move(s));
  }
  CHECK(raw_http(port, healthz).rfind("HTTP/1.1 200", 0) == 0);
  // Whatever the answer, the process survives and serves again once they time out.
  CHECK(eventually([&] { return raw_http(port, healthz).rfind("HTTP/1.1 200", 0) == 0; }, std::chrono::seconds(30)));
}
