// The admin server's socket layer on Boost.Beast: accept with a connection cap,
// read one request at a time under size limits and a whole-request deadline,
// refuse framing that could smuggle a second request, hand it to AdminApi,
// write the answer under its own deadline, keep the connection alive if asked.
#include "http/admin_server.hpp"

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <list>
#include <optional>
#include <thread>

#include "core/log.hpp"
#include "http/admin_api.hpp"

namespace pgrelay {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// RFC 9112 §6.1 and §6.3: a request body is framed by Content-Length or by a
// single, final "chunked" coding. Anything else (an unknown coding such as
// gzip or "xchunked", chunked twice, Transfer-Encoding beside Content-Length,
// or in HTTP/1.0) leaves the body's end unknown; Beast 1.74 would then read the
// body as the next request, so one request could get two answers. Returns why
// the request must be refused with 400 and the connection closed, or "".
std::string framing_problem(const http::request_header<>& req) {
  const auto [first, last] = req.equal_range(http::field::transfer_encoding);
  const auto count = std::distance(first, last);
  if (count == 0) return {};
  if (count > 1) return "Transfer-Encoding appears more than once";
  if (req.version() < 11) return "Transfer-Encoding is not allowed in HTTP/1.0";
  if (req.count(http::field::content_length) > 0) return "Transfer-Encoding and Content-Length together";
  const beast::string_view v = first->value();
  size_t b = 0, e = v.size();
  while (b < e && (v[b] == ' ' || v[b] == '\t')) ++b;
  while (e > b && (v[e - 1] == ' ' || v[e - 1] == '\t')) --e;
  if (beast::iequals(v.substr(b, e - b), "chunked")) return {};
  return "Transfer-Encoding must be \"chunked\" alone (no other coding is supported)";
}

}  // namespace

std::pair<std::string, uint16_t> parse_listen_address(const std::string& listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    throw std::invalid_argument("admin.listen \"" + listen + "\" must be host:port (e.g. 127.0.0.1:9187)");
  }
  std::string host = listen.substr(0, colon);
  const std::string port_text = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  char* end = nullptr;
  const long port = std::strtol(port_text.c_str(), &end, 10);
  if (port_text.empty() || *end != '\0' || port < 0 || port > 65535) {
    throw std::invalid_argument("admin.listen \"" + listen + "\": port must be 0-65535");
  }
  return {host, static_cast<uint16_t>(port)};
}

struct AdminServer::Impl {
  class Session;

  Impl(AdminServerOptions o, const Metrics* m, RelayProbe p) : options(std::move(o)), metrics(m), probe(std::move(p)) {}

  void do_accept();
  // At the connection cap, closes one session so a new client (a liveness
  // probe) gets in: first the one stuck longest writing an answer (a client
  // that does not read what it asked for), else the one that has waited
  // longest for a request (half-sent or idle keep-alive). Returns false if
  // every session is busy with an admin action.
  bool evict_one();

  AdminServerOptions options;
  const Metrics* metrics;
  RelayProbe probe;
  std::atomic<uint16_t> port{0};
  int active = 0;                              // open sessions; io thread only
  std::list<std::weak_ptr<Session>> sessions;  // io thread only
  int64_t rejected = 0;
  std::unique_ptr<AdminApi> api;
  // Declared last: destroyed first, while the fields above are still alive
  // for the sessions its pending handlers own.
  net::io_context io{1};
  tcp::acceptor acceptor{io};
  net::steady_timer accept_retry{io};
  std::thread thread;
};

class AdminServer::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Impl& server)
      : stream_(std::move(socket)),
        server_(server),
        buffer_(server.options.header_limit_bytes + server.options.body_limit_bytes + 1024) {
    ++server_.active;
  }
  ~Session() { --server_.active; }

  void run() {
    server_.sessions.push_back(weak_from_this());
    read();
  }
  // reading: waiting for (the rest of) a request; handling: the API has it;
  // writing: sending an answer; closing: evicted or done, about to go.
  // `since()` is when the phase began.
  enum class Phase { reading, handling, writing, closing };
  Phase phase() const { return phase_; }
  std::chrono::steady_clock::time_point since() const { return since_; }
  // Closes at once, discarding unsent bytes (a reset, so the kernel does not keep
  // them either); the pending read or write ends with operation_aborted.
  void evict() {
    enter(Phase::closing);
    beast::error_code ignored;
    stream_.socket().set_option(net::socket_base::linger(true, 0), ignored);
    stream_.close();
  }

 private:
  void enter(Phase p) {
    phase_ = p;
    since_ = std::chrono::steady_clock::now();
  }

  void read() {
    enter(Phase::reading);
    head_ = false;  // an error answer to this request has a body, whatever the last one was
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_.options.header_limit_bytes));
    parser_->body_limit(server_.options.body_limit_bytes);
    // One deadline for the whole request (and for a keep-alive idle period):
    // a client trickling bytes cannot hold the connection past it.
    stream_.expires_after(std::chrono::milliseconds(server_.options.read_timeout_ms));
    // The header first, so the body's framing is checked before any of it is read.
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    if (ec) return on_read(ec);
    const std::string problem = framing_problem(parser_->get());
    if (!problem.empty()) return reply_and_close(400, "bad request framing: " + problem);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code e, std::size_t) { self->on_read(e); });
  }

  void on_read(beast::error_code ec) {
    enter(Phase::handling);
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted) {
      return close();
    }
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      return reply_and_close(
          431, "request headers larger than " + std::to_string(server_.options.header_limit_bytes) + " bytes");
    }
    if (ec == http::error::body_limit) {
      return reply_and_close(413,
                             "request body larger than " + std::to_string(server_.options.body_limit_bytes) + " bytes");
    }
    if (ec && ec.category() == http::make_error_code(http::error::bad_method).category()) {
      return reply_and_close(400, "malformed request");
    }
    if (ec) return close();
    const auto& req = parser_->get();
    AdminRequest r;
    r.method.assign(req.method_string().data(), req.method_string().size());
    r.target.assign(req.target().data(), req.target().size());
    const auto auth = req[http::field::authorization];
    r.authorization.assign(auth.data(), auth.size());
    const auto host = req[http::field::host];
    r.host.assign(host.data(), host.size());
    r.body = req.body();
    keep_alive_ = req.keep_alive();
    version_ = req.version();
    head_ = req.method() == http::verb::head;
    server_.api->handle(std::move(r), [self = shared_from_this()](AdminResponse res) {
      auto executor = self->stream_.get_executor();
      net::post(executor, [self, res = std::move(res)]() mutable { self->send(std::move(res)); });
    });
  }

  void reply_and_close(int status, std::string message) {
    keep_alive_ = false;
    AdminResponse r;
    r.status = status;
    r.body = std::move(message) + "\n";
    send(std::move(r));
  }

  void send(AdminResponse r) {
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(r.status), version_);
    res->set(http::field::server, "pgrelay");
    res->set(http::field::content_type, r.content_type);
    res->set(http::field::cache_control, "no-store");
    res->set("X-Content-Type-Options", "nosniff");
    if (r.content_type.rfind("text/html", 0) == 0) {
      res->set("Content-Security-Policy",
               "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'");
    }
    if (!r.allow.empty()) res->set(http::field::allow, r.allow);
    if (r.status == 401) res->set(http::field::www_authenticate, "Bearer realm=\"pgrelay admin\"");
    res->body() = std::move(r.body);
    res->keep_alive(keep_alive_);
    res->prepare_payload();
    if (head_) {
      const auto n = res->body().size();
      res->body().clear();
      res->content_length(n);
    }
    // The whole answer must be written within write_timeout_ms; a client that
    // does not read is also the first evicted at the connection cap.
    enter(Phase::writing);
    stream_.expires_after(std::chrono::milliseconds(server_.options.write_timeout_ms));
    http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, std::size_t) {
      if (ec) return self->close();
      if (!self->keep_alive_) return self->close();
      self->read();
    });
  }

  void close() {
    enter(Phase::closing);
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  Impl& server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool keep_alive_ = false;
  bool head_ = false;
  Phase phase_ = Phase::reading;
  std::chrono::steady_clock::time_point since_ = std::chrono::steady_clock::now();
  unsigned version_ = 11;
};

void AdminServer::Impl::do_accept() {
  acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
    if (ec) {
      // Out of descriptors (or similar): do not spin; try again shortly.
      log::warn("admin: accept failed", {{"error", ec.message()}});
      accept_retry.expires_after(std::chrono::milliseconds(100));
      accept_retry.async_wait([this](beast::error_code e) {
        if (!e) do_accept();
      });
      return;
    }
    if (active >= options.max_connections && !evict_one()) {
      if (rejected++ % 100 == 0) {
        log::warn("admin: connection cap reached, closing new connections",
                  {{"max_connections", options.max_connections}, {"rejected", rejected}});
      }
      beast::error_code ignored;
      socket.close(ignored);
    } else {
      std::make_shared<Session>(std::move(socket), *this)->run();
    }
    do_accept();
  });
}

bool AdminServer::Impl::evict_one() {
  using Phase = Session::Phase;
  std::shared_ptr<Session> writer, reader;
  auto older = [](const std::shared_ptr<Session>& a, const std::shared_ptr<Session>& b) {
    return !b || a->since() < b->since();
  };
  for (auto it = sessions.begin(); it != sessions.end();) {
    auto s = it->lock();
    if (!s) {
      it = sessions.erase(it);
      continue;
    }
    if (s->phase() == Phase::writing && older(s, writer)) writer = s;
    if (s->phase() == Phase::reading && older(s, reader)) reader = s;
    ++it;
  }
  const auto victim = writer ? writer : reader;
  if (!victim) return false;
  victim->evict();
  return true;
}

AdminServer::AdminServer(AdminServerOptions options, const Metrics* metrics, RelayProbe probe)
    : impl_(std::make_unique<Impl>(std::move(options), metrics, std::move(probe))) {}

AdminServer::~AdminServer() { stop(); }

uint16_t AdminServer::port() const { return impl_->port.load(); }

void AdminServer::start() {
  Impl& s = *impl_;
  const auto [host, port] = parse_listen_address(s.options.listen);
  tcp::endpoint endpoint;
  beast::error_code ec;
  const auto address = net::ip::make_address(host, ec);
  if (!ec) {
    endpoint = tcp::endpoint(address, port);
  } else {
    tcp::resolver resolver(s.io);
    auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec || results.empty()) {
      throw std::runtime_error("admin server: cannot resolve \"" + host + "\" (admin.listen): " + ec.message());
    }
    endpoint = results.begin()->endpoint();
  }
  s.acceptor.open(endpoint.protocol(), ec);
  if (!ec) s.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(endpoint, ec);
  if (!ec) s.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    throw std::runtime_error("admin server: cannot listen on " + s.options.listen + " (admin.listen): " + ec.message());
  }
  s.port = s.acceptor.local_endpoint().port();
  s.api = std::make_unique<AdminApi>(s.options, s.metrics, s.probe);
  s.do_accept();
  s.thread = std::thread([&s] {
    for (;;) {
      try {
        s.io.run();
        return;
      } catch (const std::exception& e) {
        log::error("admin server: unexpected error in a request; continuing", {{"error", e.what()}});
      }
    }
  });
  log::info("admin server listening",
            {{"address", endpoint.address().to_string()},
             {"port", static_cast<int64_t>(s.port.load())},
             {"admin_actions", s.options.token.empty() ? "disabled (no admin.token)" : "enabled"}});
}

void AdminServer::stop() {
  Impl& s = *impl_;
  if (!s.thread.joinable()) return;
  net::post(s.io, [&s] {
    beast::error_code ignored;
    s.acceptor.close(ignored);
    s.accept_retry.cancel();
  });
  s.io.stop();
  s.thread.join();
  s.api.reset();  // joins the sampler and the action worker; their replies land in the stopped io_context
}

}  // namespace pgrelay
