// The webhook handler against a real local HTTP(S) receiver, without a
// database: requests, signatures, status mapping, connection reuse, timeouts,
// the circuit breaker and shutdown.
#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <algorithm>
#include <future>
#include <thread>

#include "handlers/webhook_handler.hpp"
#include "handlers/webhook_signature.hpp"
#include "support/http_receiver.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::milliseconds;

namespace {

HandlerConfig hook_config(const std::string& url) {
  HandlerConfig c;
  c.name = "hook";
  c.type = "webhook";
  c.url = url;
  c.timeout_ms = 2000;
  c.connect_timeout_ms = 1000;
  return c;
}

std::shared_ptr<const Event> make_event(int64_t id, std::string json = {}) {
  auto e = std::make_shared<Event>();
  e->id = id;
  e->type = "orders.created";
  e->json = json.empty() ? "{\"id\":" + std::to_string(id) + ",\"type\":\"orders.created\"}" : std::move(json);
  e->attempt = 1;
  return e;
}

Outcome deliver_sync(Handler& h, std::shared_ptr<const Event> e) {
  auto p = std::make_shared<std::promise<Outcome>>();
  auto f = p->get_future();
  h.deliver(std::move(e), [p](Outcome o) { p->set_value(std::move(o)); });
  REQUIRE(f.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  return f.get();
}

bool eventually_count(const HttpReceiver& rx, size_t n) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (rx.request_count() < n) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return true;
}

}  // namespace

TEST_CASE("the webhook POSTs the event JSON with content type, extra headers and a valid signature") {
  HttpReceiver rx;
  auto cfg = hook_config(rx.url("/in?x=1"));
  cfg.headers = {{"authorization", "Bearer t0ken"}, {"x-tenant", "acme"}};
  cfg.secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  WebhookHandler h(cfg);
  CHECK(deliver_sync(h, make_event(42)).is_ok());
  const auto reqs = rx.requests();
  REQUIRE(reqs.size() == 1);
  const auto& r = reqs[0];
  CHECK(r.method == "POST");
  CHECK(r.target == "/in?x=1");
  CHECK(r.body == "{\"id\":42,\"type\":\"orders.created\"}");
  CHECK(r.header("content-type") == "application/json");
  CHECK(r.header("authorization") == "Bearer t0ken");
  CHECK(r.header("x-tenant") == "acme");
  CHECK(r.header("webhook-id") == "42");
  const int64_t ts = std::stoll(r.header("webhook-timestamp"));
  const int64_t now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(std::abs(now - ts) <= 5);
  const auto key = webhook_signing_key(cfg.secret);
  CHECK(r.header("webhook-signature") == webhook_signature(*key, "42", ts, r.body));
}

TEST_CASE("told its source, the webhook sends and signs the delivery id, with a secret or without") {
  HttpReceiver rx;
  auto cfg = hook_config(rx.url());
  cfg.secret = "plain-secret";
  WebhookHandler signed_hook(cfg);
  signed_hook.set_source(EventSource{"a1b2c3d4e5f60718", "shop"});
  WebhookHandler bare_hook(hook_config(rx.url()));
  bare_hook.set_source(EventSource{"a1b2c3d4e5f60718", "shop"});
  CHECK(deliver_sync(signed_hook, make_event(42)).is_ok());
  CHECK(deliver_sync(bare_hook, make_event(43)).is_ok());
  const auto reqs = rx.requests();
  REQUIRE(reqs.size() == 2);
  CHECK(reqs[0].header("webhook-id") == "a1b2c3d4e5f60718-42");
  const int64_t ts = std::stoll(reqs[0].header("webhook-timestamp"));
  CHECK(reqs[0].header("webhook-signature") ==
        webhook_signature("plain-secret", "a1b2c3d4e5f60718-42", ts, reqs[0].body));
  CHECK(reqs[1].header("webhook-id") == "a1b2c3d4e5f60718-43");
  CHECK(reqs[1].header("webhook-signature").empty());
}

TEST_CASE("a webhook without a secret sends no signature headers") {
  HttpReceiver rx;
  WebhookHandler h(hook_config(rx.url()));
  CHECK(deliver_sync(h, make_event(1)).is_ok());
  CHECK(rx.requests().at(0).header("webhook-signature").empty());
}

TEST_CASE("the webhook maps HTTP statuses to ok, dead and retry outcomes") {
  HttpReceiver rx;
  WebhookHandler h(hook_config(rx.url()));
  rx.script({Reply::with_status(204), Reply::with_status(410, "gone for good"), Reply::with_status(503, "busy"),
             Reply::with_status(302), Reply::with_status(418), Reply::with_status(408), Reply::with_status(400)});
  CHECK(deliver_sync(h, make_event(1)).kind == Outcome::Kind::ok);
  const auto gone = deliver_sync(h, make_event(2));
  CHECK(gone.kind == Outcome::Kind::dead);
  CHECK(gone.reason == "HTTP 410: gone for good");
  const auto busy = deliver_sync(h, make_event(3));
  CHECK(busy.kind == Outcome::Kind::retry);
  CHECK(busy.reason == "HTTP 503: busy");
  CHECK_FALSE(busy.retry_after.has_value());
  CHECK(deliver_sync(h, make_event(4)).kind == Outcome::Kind::retry);
  CHECK(deliver_sync(h, make_event(5)).kind == Outcome::Kind::retry);
  CHECK(deliver_sync(h, make_event(6)).kind == Outcome::Kind::retry);
  CHECK(deliver_sync(h, make_event(7)).kind == Outcome::Kind::dead);
}

TEST_CASE("a webhook's own dead_statuses list replaces the default one") {
  HttpReceiver rx;
  auto cfg = hook_config(rx.url());
  cfg.dead_statuses = {409};
  WebhookHandler h(cfg);
  rx.script({Reply::with_status(409), Reply::with_status(410)});
  CHECK(deliver_sync(h, make_event(1)).kind == Outcome::Kind::dead);
  CHECK(deliver_sync(h, make_event(2)).kind == Outcome::Kind::retry);
}

TEST_CASE("the webhook turns Retry-After on 429 and 503 into the retry delay") {
  HttpReceiver rx;
  WebhookHandler h(hook_config(rx.url()));
  Reply slow_down = Reply::with_status(429);
  slow_down.headers = {{"Retry-After", "2"}};
  Reply later = Reply::with_status(503);
  later.headers = {{"Retry-After", "Thu, 01 Jan 2099 00:00:00 GMT"}};
  Reply garbage = Reply::with_status(503);
  garbage.headers = {{"Retry-After", "whenever"}};
  rx.script({slow_down, later, garbage});
  const auto a = deliver_sync(h, make_event(1));
  CHECK(a.kind == Outcome::Kind::retry);
  CHECK(a.retry_after == milliseconds(2000));
  const auto b = deliver_sync(h, make_event(2));
  REQUIRE(b.retry_after.has_value());
  CHECK(*b.retry_after > milliseconds(3600 * 1000));
  CHECK_FALSE(deliver_sync(h, make_event(3)).retry_after.has_value());
}

TEST_CASE("a long webhook response body is cut and made safe for the error column") {
  HttpReceiver rx;
  WebhookHandler h(hook_config(rx.url()));
  rx.script({Reply::with_status(422, std::string(100000, 'x')), Reply::with_status(422, "bad\x01\xff\nline")});
  const auto big = deliver_sync(h, make_event(1));
  CHECK(big.kind == Outcome::Kind::dead);
  CHECK(big.reason == "HTTP 422: " + std::string(200, 'x'));
  CHECK(deliver_sync(h, make_event(2)).reason == "HTTP 422: bad ? line");
  CHECK(deliver_sync(h, make_event(3)).is_ok());  // the handler is still fine after a truncated read
}

TEST_CASE("sequential webhook deliveries reuse one keep-alive connection") {
  HttpReceiver rx;
  WebhookHandler h(hook_config(rx.url()));
  for (int i = 1; i <= 20; ++i) CHECK(deliver_sync(h, make_event(i)).is_ok());
  CHECK(rx.connections_accepted() == 1);
}

TEST_CASE("a reused webhook connection the server closed is retried once on a fresh connection") {
  HttpReceiver rx;
  WebhookHandler h(hook_config(rx.url()));
  CHECK(deliver_sync(h, make_event(1)).is_ok());
  rx.close_connections();
  CHECK(deliver_sync(h, make_event(2)).is_ok());
  CHECK(rx.connections_accepted() == 2);
  CHECK(rx.request_count() == 2);
}

TEST_CASE("a webhook connection the server closes after its response is not reused") {
  HttpReceiver rx;
  WebhookHandler h(hook_config(rx.url()));
  Reply closing = Reply::with_status(200);
  closing.close = true;
  rx.script({closing});
  CHECK(deliver_sync(h, make_event(1)).is_ok());
  CHECK(deliver_sync(h, make_event(2)).is_ok());
  CHECK(rx.connections_accepted() == 2);
}

TEST_CASE("concurrent webhook deliveries beyond the pool size queue and use at most pool_size connections") {
  HttpReceiver rx;
  Reply slowish = Reply::with_status(200);
  slowish.delay = milliseconds(50);
  rx.respond_with([slowish](const ReceivedRequest&) { return slowish; });
  auto cfg = hook_config(rx.url());
  cfg.pool_size = 3;
  WebhookHandler h(cfg);
  std::vector<std::future<Outcome>> results;
  for (int i = 1; i <= 60; ++i) {
    auto p = std::make_shared<std::promise<Outcome>>();
    results.push_back(p->get_future());
    h.deliver(make_event(i), [p](Outcome o) { p->set_value(std::move(o)); });
  }
  for (auto& f : results) {
    REQUIRE(f.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(f.get().is_ok());
  }
  CHECK(rx.request_count() == 60);
  CHECK(rx.connections_accepted() <= 3);
  // Queued, not sent one after another: as the receiver saw it, three requests
  // were waiting for their answers at once (each is answered 50 ms after it arrives).
  const auto reqs = rx.requests();
  size_t most_at_once = 0;
  for (const auto& r : reqs) {
    size_t open = 0;
    for (const auto& o : reqs) open += o.at <= r.at && r.at < o.at + slowish.delay;
    most_at_once = std::max(most_at_once, open);
  }
  CHECK(most_at_once == 3);
}

TEST_CASE("a webhook without pool_size sends as many requests at once as its concurrency") {
  HttpReceiver rx;
  Reply slow = Reply::with_status(200);
  slow.delay = milliseconds(400);
  rx.respond_with([slow](const ReceivedRequest&) { return slow; });
  auto cfg = hook_config(rx.url());
  cfg.concurrency = 16;  // pool_size unset: it follows
  WebhookHandler h(cfg);
  std::vector<std::future<Outcome>> results;
  for (int i = 1; i <= 16; ++i) {
    auto p = std::make_shared<std::promise<Outcome>>();
    results.push_back(p->get_future());
    h.deliver(make_event(i), [p](Outcome o) { p->set_value(std::move(o)); });
  }
  const auto start = std::chrono::steady_clock::now();
  for (auto& f : results) {
    REQUIRE(f.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(f.get().is_ok());
  }
  // All 16 in flight together: one round of the receiver's delay, not two or more.
  CHECK(std::chrono::steady_clock::now() - start < milliseconds(750));
  CHECK(rx.connections_accepted() == 16);
}

TEST_CASE("a webhook receiver that never answers times out with a retry") {
  HttpReceiver rx;
  Reply silent;
  silent.never_answer = true;
  rx.script({silent});
  auto cfg = hook_config(rx.url());
  cfg.timeout_ms = 300;
  WebhookHandler h(cfg);
  const auto t0 = std::chrono::steady_clock::now();
  const auto o = deliver_sync(h, make_event(1));
  CHECK(o.kind == Outcome::Kind::retry);
  CHECK(o.reason == "timed out after 300 ms");
  CHECK(std::chrono::steady_clock::now() - t0 >= milliseconds(290));
  CHECK(deliver_sync(h, make_event(2)).is_ok());  // the stuck connection was not reused
}

TEST_CASE("a refused webhook connection is a retry that names the destination") {
  const uint16_t port = closed_port();
  auto cfg = hook_config("http://127.0.0.1:" + std::to_string(port) + "/hook");
  cfg.breaker.failures = 0;
  WebhookHandler h(cfg);
  const auto o = deliver_sync(h, make_event(1));
  CHECK(o.kind == Outcome::Kind::retry);
  CHECK(o.reason.rfind("connect to 127.0.0.1:" + std::to_string(port) + " failed: ", 0) == 0);
}

TEST_CASE("an open webhook circuit defers deliveries without sending them") {
  const uint16_t port = closed_port();
  auto cfg = hook_config("http://127.0.0.1:" + std::to_string(port) + "/hook");
  cfg.breaker.failures = 2;
  cfg.breaker.cooldown_ms = 60000;
  WebhookHandler h(cfg);
  CHECK(deliver_sync(h, make_event(1)).kind == Outcome::Kind::retry);
  CHECK(deliver_sync(h, make_event(2)).kind == Outcome::Kind::retry);
  const auto o = deliver_sync(h, make_event(3));
  CHECK(o.kind == Outcome::Kind::defer);
  CHECK(o.reason == "circuit open for 127.0.0.1:" + std::to_string(port));
  REQUIRE(o.retry_after.has_value());
  CHECK(*o.retry_after > milliseconds(50000));
  CHECK(*o.retry_after <= milliseconds(60000));
}

TEST_CASE("webhook shutdown answers queued and in-flight deliveries with a retry") {
  HttpReceiver rx;
  Reply silent;
  silent.never_answer = true;
  rx.respond_with([silent](const ReceivedRequest&) { return silent; });
  auto cfg = hook_config(rx.url());
  cfg.pool_size = 1;
  cfg.timeout_ms = 60000;
  auto h = std::make_unique<WebhookHandler>(cfg);
  std::vector<std::future<Outcome>> results;
  for (int i = 1; i <= 3; ++i) {
    auto p = std::make_shared<std::promise<Outcome>>();
    results.push_back(p->get_future());
    h->deliver(make_event(i), [p](Outcome o) { p->set_value(std::move(o)); });
  }
  REQUIRE(eventually_count(rx, 1));
  h->shutdown();
  for (auto& f : results) {
    REQUIRE(f.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
    const auto o = f.get();
    CHECK(o.kind == Outcome::Kind::retry);
    CHECK(o.reason == "shutting down");
  }
  CHECK(deliver_sync(*h, make_event(9)).reason == "shutting down");
  h.reset();  // joins its thread
}

TEST_CASE("HTTPS webhook delivery verifies the receiver against ca_file") {
  HttpReceiver rx(HttpReceiver::Options{true});
  auto cfg = hook_config(rx.url());
  cfg.ca_file = rx.ca_file();
  WebhookHandler h(cfg);
  CHECK(deliver_sync(h, make_event(1)).is_ok());
  CHECK(deliver_sync(h, make_event(2)).is_ok());
  CHECK(rx.connections_accepted() == 1);
}

TEST_CASE("an HTTPS webhook to an untrusted certificate fails with a clear reason unless verification is off") {
  HttpReceiver rx(HttpReceiver::Options{true});
  auto cfg = hook_config(rx.url());
  cfg.breaker.failures = 0;
  {
    WebhookHandler h(cfg);
    const auto o = deliver_sync(h, make_event(1));
    CHECK(o.kind == Outcome::Kind::retry);
    CHECK(o.reason.rfind("TLS handshake with 127.0.0.1:" + std::to_string(rx.port()) + " failed: ", 0) == 0);
    CHECK(o.reason.find("certificate verify failed") != std::string::npos);
  }
  cfg.tls_verify = false;
  WebhookHandler h(cfg);
  CHECK(deliver_sync(h, make_event(2)).is_ok());
}

TEST_CASE("a webhook config it cannot use is refused with the key path") {
  auto cfg = hook_config("http://127.0.0.1:1/x");
  cfg.secret = "whsec_!!!";
  CHECK_THROWS_WITH_AS(WebhookHandler{cfg}, doctest::Contains("handlers.hook.secret"), ConfigError);
  cfg.secret.clear();
  cfg.url = "https://127.0.0.1/x";
  cfg.ca_file = "/nonexistent/ca.pem";
  CHECK_THROWS_WITH_AS(WebhookHandler{cfg}, doctest::Contains("handlers.hook.ca_file"), ConfigError);
}

TEST_CASE("webhook deliveries queued behind a failing endpoint are deferred once the circuit opens") {
  const uint16_t port = closed_port();
  auto cfg = hook_config("http://127.0.0.1:" + std::to_string(port) + "/hook");
  cfg.pool_size = 1;
  cfg.breaker.failures = 1;
  cfg.breaker.cooldown_ms = 60000;
  WebhookHandler h(cfg);
  std::vector<std::future<Outcome>> results;
  for (int i = 1; i <= 5; ++i) {
    auto p = std::make_shared<std::promise<Outcome>>();
    results.push_back(p->get_future());
    h.deliver(make_event(i), [p](Outcome o) { p->set_value(std::move(o)); });
  }
  int retries = 0, defers = 0;
  for (auto& f : results) {
    REQUIRE(f.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
    const auto o = f.get();
    retries += o.kind == Outcome::Kind::retry;
    defers += o.kind == Outcome::Kind::defer;
  }
  CHECK(retries == 1);
  CHECK(defers == 4);
}
