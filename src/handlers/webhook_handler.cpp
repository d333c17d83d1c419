// The webhook handler: builds and signs the request, asks the circuit breaker,
// and turns the HTTP result into an Outcome.
#include "handlers/webhook_handler.hpp"

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <future>
#include <thread>

#include "core/breaker_board.hpp"
#include "core/log.hpp"
#include "core/trace_context.hpp"
#include "handlers/circuit_breaker.hpp"
#include "handlers/cloudevent.hpp"
#include "handlers/http_client_pool.hpp"
#include "handlers/retry_after.hpp"
#include "handlers/webhook_signature.hpp"

namespace pgrelay {
namespace {

namespace net = boost::asio;

constexpr size_t kReasonBodyBytes = 200;

// At most `limit` bytes of `body` that are safe in a text column and a log
// line: valid UTF-8 kept, control characters as spaces, invalid bytes as '?'.
std::string excerpt(const std::string& body, size_t limit) {
  std::string out;
  size_t i = 0;
  while (i < body.size()) {
    const auto c = static_cast<unsigned char>(body[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool valid = len > 0 && i + len <= body.size();
    for (size_t k = 1; valid && k < len; ++k) valid = (static_cast<unsigned char>(body[i + k]) & 0xC0) == 0x80;
    if (!valid) len = 1;
    if (out.size() + (valid ? len : 1) > limit) break;
    if (!valid) {
      out += '?';
    } else if (len == 1 && (c < 0x20 || c == 0x7F)) {
      out += ' ';
    } else {
      out.append(body, i, len);
    }
    i += len;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

bool retryable_status(int status) { return status == 408 || status == 429 || status >= 500; }

const char* state_name(CircuitBreaker::State s) {
  switch (s) {
    case CircuitBreaker::State::closed: return "closed";
    case CircuitBreaker::State::open: return "open";
    case CircuitBreaker::State::half_open: return "half_open";
  }
  return "closed";
}

}  // namespace

struct WebhookHandler::Impl {
  Impl(const HandlerConfig& cfg, const Clock& clock)
      : config(cfg), breaker(cfg.breaker.failures, cfg.breaker.cooldown_ms, clock), work(io.get_executor()) {
    const std::string where = "handlers." + cfg.name;
    std::string error;
    auto dest = HttpDestination::parse(cfg.url, &error);
    if (!dest) throw ConfigError("config: " + where + ".url " + error + " (got \"" + cfg.url + "\")");
    destination = *dest;
    if (!cfg.secret.empty()) {
      auto key = webhook_signing_key(cfg.secret);
      if (!key) {
        // parse_config() refuses such secrets first; this guards handlers built by hand.
        throw ConfigError("config: " + where +
                          ".secret is \"whsec_\" without base64 of a non-empty key after it "
                          "(use the secret exactly as issued, or one without the whsec_ prefix)");
      }
      signing_key = std::move(*key);
    }
    board_destination = std::string(destination.tls ? "https://" : "http://") + destination.authority();
    const auto mode = cloudevents_mode(cfg.cloudevents_mode);
    if (!mode) throw ConfigError("config: " + where + ".cloudevents.mode must be binary or structured");
    cloudevents = *mode;
    HttpClientOptions options;
    options.pool_size = webhook_pool_size(cfg);
    options.connect_timeout_ms = cfg.connect_timeout_ms;
    options.tls_verify = cfg.tls_verify;
    options.ca_file = cfg.ca_file;
    try {
      pool = std::make_unique<HttpClientPool>(io, destination, options);
    } catch (const std::exception& e) {
      throw ConfigError("config: " + where + ".ca_file: " + e.what());
    }
    report_breaker();
    thread = std::thread([this] { io.run(); });
  }

  // Tells the board (so /metrics, /status.json and the status page) when the
  // breaker's state or failure count changed since the last report.
  // I/O thread only (and the constructor, before the thread starts).
  void report_breaker() {
    const CircuitBreaker::State s = breaker.state();
    const int failures = breaker.consecutive_failures();
    if (reported && s == reported_state && failures == reported_failures) return;
    reported = true;
    reported_state = s;
    reported_failures = failures;
    BreakerBoard::global().report(config.name, board_destination, state_name(s), failures);
  }

  // Runs on the I/O thread.
  void start(const std::shared_ptr<const Event>& event, Done done) {
    if (stopped) return done(Outcome::retry("shutting down"));
    HttpRequest req;
    req.timeout_ms = config.timeout_ms;
    req.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(config.timeout_ms);
    const std::string id = delivery_id(source, event->id);
    if (cloudevents == CloudEventsMode::none) {
      req.headers.emplace_back("content-type", "application/json");
      req.body = event->json;
    } else {
      std::string why;
      auto ce = to_cloudevent(cloudevents, *event, id, cloudevents_source(), &why);
      if (!ce) return done(Outcome::dead(why));
      req.headers = std::move(ce->headers);
      req.body = std::move(ce->body);
    }
    const TraceContext trace = trace_context_of(event->json);
    if (!trace.empty()) req.headers.emplace_back("traceparent", trace.traceparent);
    if (!trace.tracestate.empty()) req.headers.emplace_back("tracestate", trace.tracestate);
    for (const auto& h : config.headers) req.headers.push_back(h);
    // Sent signed or not: receivers deduplicate by it either way.
    req.headers.emplace_back("webhook-id", id);
    if (!config.secret.empty()) {
      const int64_t now_s =
          std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
      req.headers.emplace_back("webhook-timestamp", std::to_string(now_s));
      req.headers.emplace_back("webhook-signature", webhook_signature(signing_key, id, now_s, req.body));
    }
    // The breaker is asked when the request would go out, not when it is queued,
    // so requests waiting behind a dying endpoint's connections are deferred too.
    auto wait = std::make_shared<std::chrono::milliseconds>(0);
    req.admit = [this, wait] {
      const CircuitBreaker::Decision d = breaker.allow();
      report_breaker();
      *wait = d.wait;
      return d.allowed;
    };
    pool->submit(std::move(req), [this, wait, done = std::move(done)](HttpResult r) {
      const bool was_open = breaker.state() != CircuitBreaker::State::closed;
      Outcome o = classify(r, *wait);
      const bool is_open = breaker.state() != CircuitBreaker::State::closed;
      report_breaker();
      if (is_open && !was_open) {
        log::warn("webhook circuit opened", {{"handler", config.name},
                                             {"destination", destination.authority()},
                                             {"cooldown_ms", config.breaker.cooldown_ms},
                                             {"error", o.reason}});
      } else if (was_open && !is_open) {
        log::info("webhook circuit closed", {{"handler", config.name}, {"destination", destination.authority()}});
      }
      done(std::move(o));
    });
  }

  std::string cloudevents_source() const {
    return config.cloudevents_source.empty() ? default_cloudevents_source(source.database) : config.cloudevents_source;
  }

  // Maps a result to an outcome and tells the breaker whether the endpoint works.
  Outcome classify(const HttpResult& r, std::chrono::milliseconds breaker_wait) {
    if (r.failure == HttpResult::Failure::shutdown) return Outcome::retry("shutting down");
    if (r.failure == HttpResult::Failure::not_sent) {
      return Outcome::defer(breaker_wait, "circuit open for " + destination.authority());
    }
    if (r.failure != HttpResult::Failure::none) {
      breaker.record_failure();
      return Outcome::retry(r.error);
    }
    const std::string reason =
        "HTTP " + std::to_string(r.status) + (r.body.empty() ? "" : ": " + excerpt(r.body, kReasonBodyBytes));
    Outcome o = answered(r, reason);
    return o.with_response(r.status, r.body.substr(0, Outcome::kMaxResponseHead));
  }

  // The outcome of a response that came, by its status.
  Outcome answered(const HttpResult& r, const std::string& reason) {
    if (r.status >= 200 && r.status < 300) {
      breaker.record_success();
      return Outcome::ok();
    }
    if (std::find(config.dead_statuses.begin(), config.dead_statuses.end(), r.status) != config.dead_statuses.end()) {
      breaker.record_success();  // the endpoint answered; the event is what is wrong
      return Outcome::dead(reason);
    }
    if (retryable_status(r.status)) breaker.record_failure();
    if (!r.retry_after.empty()) {
      if (auto d = parse_retry_after(r.retry_after, std::chrono::system_clock::now()))
        return Outcome::retry_in(*d, reason);
    }
    return Outcome::retry(reason);
  }

  HandlerConfig config;
  EventSource source;  // set before the first delivery (set_source)
  CloudEventsMode cloudevents = CloudEventsMode::none;
  HttpDestination destination;
  std::string signing_key;
  CircuitBreaker breaker;         // I/O thread only
  std::string board_destination;  // "https://host:port", the board's and the metric's label
  bool reported = false;          // I/O thread only: the last report_breaker() values
  CircuitBreaker::State reported_state = CircuitBreaker::State::closed;
  int reported_failures = 0;
  net::io_context io;
  net::executor_work_guard<net::io_context::executor_type> work;
  std::unique_ptr<HttpClientPool> pool;  // I/O thread only
  std::atomic<bool> stopping{false};     // shutdown() was called
  bool stopped = false;                  // I/O thread only: the pool is closed
  std::thread thread;
};

WebhookHandler::WebhookHandler(const HandlerConfig& config, const Clock& clock)
    : impl_(std::make_unique<Impl>(config, clock)) {}

WebhookHandler::~WebhookHandler() {
  shutdown();
  impl_->work.reset();
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  BreakerBoard::global().forget(impl_->config.name);
}

void WebhookHandler::deliver(std::shared_ptr<const Event> event, Done done) {
  if (impl_->stopping) return done(Outcome::retry("shutting down"));
  net::post(impl_->io, [impl = impl_.get(), event = std::move(event), done = std::move(done)]() mutable {
    impl->start(event, std::move(done));
  });
}

void WebhookHandler::set_source(const EventSource& source) { impl_->source = source; }

void WebhookHandler::shutdown() {
  if (impl_->stopping.exchange(true)) return;
  std::promise<void> closed;
  net::post(impl_->io, [impl = impl_.get(), &closed] {
    impl->stopped = true;
    impl->pool->close_all();
    closed.set_value();
  });
  closed.get_future().wait();
}

}  // namespace pgrelay
