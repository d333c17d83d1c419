// Publishing event documents to JetStream with nats.c: the lazy connection, the
// worker pool, and the mapping from publish results to outcomes.
#include "handlers/nats_handler.hpp"

#include <nats/nats.h>

#include <algorithm>
#include <climits>

#include "core/log.hpp"
#include "core/trace_context.hpp"

namespace pgrelay {
namespace {

constexpr int64_t kReconnectWaitMs = 1000;
constexpr int64_t kConnectTimeoutMs = 2000;
constexpr const char* kShuttingDown = "nats: relay is shutting down";

// The URL as it may appear in logs and last_error: without user:password@.
std::string shown_url(const std::string& url) {
  const auto scheme = url.find("://");
  const auto at = url.rfind('@');
  if (scheme == std::string::npos || at == std::string::npos || at < scheme) return url;
  return url.substr(0, scheme + 3) + "***@" + url.substr(at + 1);
}

// The text of the last nats.c error on this thread if it is about `s` (the
// thread-local text may be left over from an earlier call), else the status's.
std::string error_text(natsStatus s) {
  natsStatus last = NATS_OK;
  const char* text = nats_GetLastError(&last);
  if (last == s && text != nullptr && *text != '\0') return text;
  return natsStatus_GetText(s);
}

std::string connected_url(natsConnection* nc) {
  char buf[256] = {0};
  if (natsConnection_GetConnectedUrl(nc, buf, sizeof buf) != NATS_OK) return {};
  return shown_url(buf);
}

// Connection events, for the log. No closure: the library may run these after
// the handler is gone, so they touch nothing but the connection.
void on_connected(natsConnection* nc, void*) { log::info("nats: connected", {{"url", connected_url(nc)}}); }
void on_reconnected(natsConnection* nc, void*) { log::info("nats: reconnected", {{"url", connected_url(nc)}}); }
void on_disconnected(natsConnection* nc, void*) {
  if (natsConnection_IsClosed(nc)) return;  // our own shutdown
  log::warn("nats: disconnected; reconnecting in the background", {{"reconnect_wait_ms", kReconnectWaitMs}});
}

}  // namespace

std::string nats_subject(const std::string& subject_template, const std::string& event_type) {
  std::string subject;
  for (size_t i = 0; i < subject_template.size();) {
    if (subject_template.compare(i, 6, "{type}") == 0) {
      subject += event_type;
      i += 6;
    } else {
      subject += subject_template[i++];
    }
  }
  // Publishing needs a literal subject: non-empty tokens, no whitespace, no wildcard.
  size_t start = 0;
  for (;;) {
    const size_t dot = subject.find('.', start);
    const std::string token = subject.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (token.empty() || token == "*" || token == ">") return {};
    for (unsigned char ch : token) {
      if (ch <= ' ' || ch == 0x7f) return {};
    }
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return subject;
}

struct NatsHandler::Connection {
  natsOptions* options = nullptr;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  ~Connection() {
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(options);
  }
};

NatsHandler::NatsHandler(const HandlerConfig& cfg)
    : url_(cfg.nats_url),
      subject_(cfg.subject),
      timeout_ms_(cfg.timeout_ms),
      cloudevents_(cloudevents_mode(cfg.cloudevents_mode).value_or(CloudEventsMode::none)),
      cloudevents_source_(cfg.cloudevents_source),
      pool_(cfg.concurrency, kShuttingDown) {}

NatsHandler::~NatsHandler() {
  shutdown();
  pool_.join();
  connection_.reset();
}

void NatsHandler::deliver(std::shared_ptr<const Event> event, Done done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
  pool_.submit([this, event = std::move(event), deadline] { return publish(*event, deadline); }, std::move(done));
}

void NatsHandler::set_source(const EventSource& source) { source_ = source; }

void NatsHandler::shutdown() {
  if (!pool_.stop()) return;  // answers the queued deliveries
  // Closing fails the publishes waiting for an ack, so the workers finish now.
  std::lock_guard<std::mutex> lock(connection_mutex_);
  closed_ = true;
  if (connection_) natsConnection_Close(connection_->nc);
}

NatsHandler::Connection* NatsHandler::connection(std::string* why) {
  std::lock_guard<std::mutex> lock(connection_mutex_);
  if (closed_) {
    *why = kShuttingDown;
    return nullptr;
  }
  if (connection_) return connection_.get();
  auto c = std::make_unique<Connection>();
  natsStatus s = natsOptions_Create(&c->options);
  if (s == NATS_OK) s = natsOptions_SetURL(c->options, url_.c_str());
  if (s == NATS_OK) s = natsOptions_SetName(c->options, "pgrelay");
  // Never give up: a relay outlives any NATS outage, and deliveries retry meanwhile.
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(c->options, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(c->options, kReconnectWaitMs);
  if (s == NATS_OK) s = natsOptions_SetTimeout(c->options, std::min(kConnectTimeoutMs, timeout_ms_));
  // With a connected callback, a server that is down at the first delivery does
  // not fail the connect: the library keeps trying in the background.
  if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(c->options, true, on_connected, nullptr);
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(c->options, on_disconnected, nullptr);
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(c->options, on_reconnected, nullptr);
  if (s == NATS_OK) {
    s = natsConnection_Connect(&c->nc, c->options);
    if (s == NATS_OK) {
      log::info("nats: connected", {{"url", connected_url(c->nc)}});
    } else if (s == NATS_NOT_YET_CONNECTED) {
      log::warn("nats: server not reachable yet; connecting in the background",
                {{"url", shown_url(url_)}, {"reconnect_wait_ms", kReconnectWaitMs}});
      s = NATS_OK;
    }
  }
  if (s == NATS_OK) {
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = timeout_ms_;
    s = natsConnection_JetStream(&c->js, c->nc, &jo);
  }
  if (s != NATS_OK) {
    *why = "nats: cannot set up a connection to " + shown_url(url_) + ": " + error_text(s);
    return nullptr;
  }
  connection_ = std::move(c);
  return connection_.get();
}

Outcome NatsHandler::publish(const Event& event, std::chrono::steady_clock::time_point deadline) {
  using std::chrono::milliseconds;
  const std::string subject = nats_subject(subject_, event.type);
  if (subject.empty()) {
    return Outcome::dead("nats: subject template \"" + subject_ + "\" with event type \"" + event.type +
                         "\" does not give a valid NATS subject (empty token, whitespace or wildcard)");
  }
  const std::string msg_id = delivery_id(source_, event.id);
  std::vector<std::pair<std::string, std::string>> headers = {{"Nats-Msg-Id", msg_id}};
  std::string cloudevent_body;
  if (cloudevents_ != CloudEventsMode::none) {
    const std::string source =
        cloudevents_source_.empty() ? default_cloudevents_source(source_.database) : cloudevents_source_;
    std::string why;
    auto ce = to_cloudevent(cloudevents_, event, msg_id, source, &why);
    if (!ce) return Outcome::dead(why);
    headers.insert(headers.end(), ce->headers.begin(), ce->headers.end());
    cloudevent_body = std::move(ce->body);
  }
  const std::string& body = cloudevents_ == CloudEventsMode::none ? event.json : cloudevent_body;
  const TraceContext trace = trace_context_of(event.json);
  if (!trace.empty()) headers.emplace_back("traceparent", trace.traceparent);
  if (!trace.tracestate.empty()) headers.emplace_back("tracestate", trace.tracestate);
  if (body.size() > static_cast<size_t>(INT_MAX)) {
    return Outcome::dead("nats: event of " + std::to_string(body.size()) + " bytes is too large to publish");
  }
  std::string why;
  Connection* c = connection(&why);
  if (c == nullptr) return Outcome::retry(why);
  // Fail fast while the library reconnects instead of buffering until the ack times out.
  if (natsConnection_Status(c->nc) != NATS_CONN_STATUS_CONNECTED) {
    return Outcome::retry("nats: not connected to " + shown_url(url_) +
                          " (server down or unreachable); reconnecting every " + std::to_string(kReconnectWaitMs) +
                          " ms");
  }
  const int64_t left_ms = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now()).count();
  if (left_ms <= 0) {
    return Outcome::retry("nats: waited " + std::to_string(timeout_ms_) + " ms for a free publisher (concurrency " +
                          std::to_string(pool_.threads()) + ")");
  }
  // Stop waiting a little before the relay's own timeout, so the reason is ours.
  const int64_t wait_ms = std::max<int64_t>(1, left_ms - std::min<int64_t>(left_ms / 10, 250));

  natsMsg* msg = nullptr;
  natsStatus s = natsMsg_Create(&msg, subject.c_str(), nullptr, body.data(), static_cast<int>(body.size()));
  for (const auto& [name, value] : headers) {
    if (s == NATS_OK) s = natsMsgHeader_Set(msg, name.c_str(), value.c_str());
  }
  jsPubAck* ack = nullptr;
  jsErrCode js_error = static_cast<jsErrCode>(0);
  if (s == NATS_OK) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = wait_ms;
    s = js_PublishMsg(&ack, c->js, msg, &po, &js_error);
  }
  const std::string detail = s == NATS_OK ? std::string() : error_text(s);
  const bool duplicate = ack != nullptr && ack->Duplicate;
  jsPubAck_Destroy(ack);
  natsMsg_Destroy(msg);

  const std::string on = " on subject \"" + subject + "\"";
  if (s == NATS_OK) {
    if (duplicate) log::debug("nats: stream already had this event", {{"event_id", event.id}, {"subject", subject}});
    return Outcome::ok();
  }
  if (pool_.stopped()) return Outcome::retry(kShuttingDown);
  // Nobody answers a JetStream publish when no stream captures its subject (nats.c
  // then also reports JSNotEnabledErr, which it cannot tell apart from this).
  if (s == NATS_NO_RESPONDERS) {
    return Outcome::retry("nats: no stream matches subject \"" + subject +
                          "\" (no responders): create a JetStream stream whose subjects include it, "
                          "or enable JetStream on the server");
  }
  if (js_error != 0) {
    return Outcome::retry("nats: the stream refused the message" + on + ": " + detail + " (JetStream error " +
                          std::to_string(static_cast<int>(js_error)) + ")");
  }
  switch (s) {
    case NATS_TIMEOUT:
      return Outcome::retry("nats: no publish ack" + on + " within " + std::to_string(wait_ms) +
                            " ms (server slow, or connection to " + shown_url(url_) + " lost)");
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NOT_YET_CONNECTED:
    case NATS_STALE_CONNECTION:
    case NATS_IO_ERROR:
      return Outcome::retry("nats: connection to " + shown_url(url_) + " lost while publishing" + on + ": " + detail);
    case NATS_MAX_PAYLOAD:
      return Outcome::dead("nats: event of " + std::to_string(body.size()) +
                           " bytes exceeds the server's max_payload of " +
                           std::to_string(natsConnection_GetMaxPayload(c->nc)) + " bytes");
    default: return Outcome::retry("nats: publish" + on + " failed: " + detail);
  }
}

}  // namespace pgrelay
