// Keep-alive HTTP/1.1 client connections to one destination on Boost.Beast:
// queueing, connect/TLS set-up, deadlines and stale-connection handling.
#include "handlers/http_client_pool.hpp"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <deque>
#include <set>
#include <stdexcept>

namespace pgrelay {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

constexpr uint32_t kMaxResponseHeaderBytes = 64 * 1024;

// One TCP (or TLS over TCP) connection; carries one request at a time.
struct Connection {
  Connection(net::io_context& io, net::ssl::context* tls) : resolver(io) {
    if (tls) {
      tls_stream.emplace(io, *tls);
    } else {
      plain.emplace(io);
    }
  }
  beast::tcp_stream& tcp() { return plain ? *plain : beast::get_lowest_layer(*tls_stream); }
  void close() {
    resolver.cancel();
    error_code ec;
    tcp().socket().shutdown(tcp::socket::shutdown_both, ec);
    tcp().close();
  }
  template <typename F>
  void with_stream(F&& f) {
    if (tls_stream) {
      f(*tls_stream);
    } else {
      f(*plain);
    }
  }

  tcp::resolver resolver;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_stream;
  beast::flat_buffer buffer;
  std::chrono::steady_clock::time_point connect_deadline;
  int served = 0;  // responses read on this connection; > 0 means "reused"
};

// One request on its way: queued, then bound to a connection until answered.
struct Exchange {
  Exchange(net::io_context& io, HttpRequest r, HttpClientPool::Callback cb)
      : request(std::move(r)), done(std::move(cb)), timer(io) {}
  HttpRequest request;
  HttpClientPool::Callback done;
  net::steady_timer timer;  // the request's deadline
  std::shared_ptr<Connection> conn;
  std::optional<http::request<http::string_body>> message;
  std::optional<http::response_parser<http::string_body>> parser;
  bool answered = false;
  bool retried_fresh = false;
};

using ExchangePtr = std::shared_ptr<Exchange>;
using ConnectionPtr = std::shared_ptr<Connection>;

HttpResult failure(HttpResult::Failure kind, std::string error) {
  HttpResult r;
  r.failure = kind;
  r.error = std::move(error);
  return r;
}

}  // namespace

struct HttpClientPool::Impl : std::enable_shared_from_this<HttpClientPool::Impl> {
  Impl(net::io_context& io_, HttpDestination d, HttpClientOptions o)
      : io(io_), dest(std::move(d)), options(std::move(o)) {
    const bool default_port = dest.port == (dest.tls ? "443" : "80");
    host_header = default_port ? dest.bracketed_host() : dest.authority();
    if (dest.tls) {
      tls_context.emplace(net::ssl::context::tls_client);
      SSL_CTX_set_min_proto_version(tls_context->native_handle(), TLS1_2_VERSION);
      if (options.tls_verify) {
        tls_context->set_verify_mode(net::ssl::verify_peer);
        tls_context->set_default_verify_paths();
        if (!options.ca_file.empty()) {
          error_code ec;
          tls_context->load_verify_file(options.ca_file, ec);
          if (ec) throw std::runtime_error("cannot load ca_file " + options.ca_file + ": " + ec.message());
        }
      } else {
        tls_context->set_verify_mode(net::ssl::verify_none);
      }
    }
  }

  void submit(HttpRequest request, Callback done) {
    auto x = std::make_shared<Exchange>(io, std::move(request), std::move(done));
    if (stopping) return answer(x, failure(HttpResult::Failure::shutdown, "shutting down"));
    x->timer.expires_at(x->request.deadline);
    x->timer.async_wait([self = shared_from_this(), x](error_code ec) {
      if (!ec) self->on_deadline(x);
    });
    queue.push_back(x);
    pump();
  }

  // Starts queued requests while there is an idle connection or room for one.
  void pump() {
    while (!queue.empty() && !stopping) {
      ExchangePtr x = queue.front();
      if (x->request.admit && (!idle.empty() || open < std::max(1, options.pool_size)) && !x->request.admit()) {
        queue.pop_front();
        answer(x, failure(HttpResult::Failure::not_sent, "not sent"));
        continue;
      }
      if (!idle.empty()) {
        ConnectionPtr c = idle.back();  // most recently used: least likely closed by the server
        idle.pop_back();
        queue.pop_front();
        bind(x, c);
        send(x, c);
      } else if (open < std::max(1, options.pool_size)) {
        queue.pop_front();
        ++open;
        ConnectionPtr c = new_connection();
        bind(x, c);
        connect(x, c);
      } else {
        break;
      }
    }
  }

  ConnectionPtr new_connection() {
    auto c = std::make_shared<Connection>(io, tls_context ? &*tls_context : nullptr);
    c->connect_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options.connect_timeout_ms);
    return c;
  }

  void bind(const ExchangePtr& x, const ConnectionPtr& c) {
    x->conn = c;
    active.insert(x);
  }

  void connect(const ExchangePtr& x, const ConnectionPtr& c) {
    c->resolver.async_resolve(dest.host, dest.port,
                              [self = shared_from_this(), x, c](error_code ec, tcp::resolver::results_type results) {
                                self->on_resolve(x, c, ec, results);
                              });
  }

  void on_resolve(const ExchangePtr& x, const ConnectionPtr& c, error_code ec, const tcp::resolver::results_type& r) {
    if (x->answered) return discard(c);
    if (ec) return fail_connect(x, c, "connect to " + dest.authority() + " failed: cannot resolve: " + ec.message());
    c->tcp().expires_at(c->connect_deadline);
    c->tcp().async_connect(
        r, [self = shared_from_this(), x, c](error_code ec, const tcp::endpoint&) { self->on_connect(x, c, ec); });
  }

  std::string connect_error(error_code ec) const {
    if (ec == beast::error::timeout) return "timed out after " + std::to_string(options.connect_timeout_ms) + " ms";
    return ec.message();
  }

  void on_connect(const ExchangePtr& x, const ConnectionPtr& c, error_code ec) {
    if (x->answered) return discard(c);
    if (ec) return fail_connect(x, c, "connect to " + dest.authority() + " failed: " + connect_error(ec));
    c->tcp().socket().set_option(tcp::no_delay(true), ec);
    if (!c->tls_stream) {
      c->tcp().expires_never();
      return send(x, c);
    }
    SSL* ssl = c->tls_stream->native_handle();
    const bool ip = dest.host_is_ip_literal();
    if (!ip) SSL_set_tlsext_host_name(ssl, dest.host.c_str());  // SNI carries names only (RFC 6066)
    if (options.tls_verify) {
      if (ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), dest.host.c_str());
      } else {
        SSL_set1_host(ssl, dest.host.c_str());
      }
    }
    c->tls_stream->async_handshake(net::ssl::stream_base::client, [self = shared_from_this(), x, c](error_code ec) {
      if (x->answered) return self->discard(c);
      if (ec) {
        return self->fail_connect(
            x, c, "TLS handshake with " + self->dest.authority() + " failed: " + self->connect_error(ec));
      }
      c->tcp().expires_never();
      self->send(x, c);
    });
  }

  void fail_connect(const ExchangePtr& x, const ConnectionPtr& c, std::string error) {
    drop(c);
    answer(x, failure(HttpResult::Failure::connect, std::move(error)));
    pump();
  }

  void send(const ExchangePtr& x, const ConnectionPtr& c) {
    if (!x->message) {
      auto& m = x->message.emplace(http::verb::post, dest.target, 11);
      m.set(http::field::host, host_header);
      m.set(http::field::user_agent, "pgrelay/0.1");
      for (const auto& [name, value] : x->request.headers) m.set(name, value);
      m.body() = std::move(x->request.body);
      m.keep_alive(true);
      m.prepare_payload();
    }
    x->parser.emplace();
    x->parser->body_limit(options.max_response_body_bytes);
    x->parser->header_limit(kMaxResponseHeaderBytes);
    c->with_stream([&](auto& stream) {
      http::async_write(stream, *x->message,
                        [self = shared_from_this(), x, c](error_code ec, size_t) { self->on_write(x, c, ec); });
    });
  }

  void on_write(const ExchangePtr& x, const ConnectionPtr& c, error_code ec) {
    if (x->answered) return discard(c);
    if (ec) return fail_exchange(x, c, ec);
    // The header first, then the body: Beast 1.74's eager parser (async_read)
    // moves on to the body after a Content-Length over body_limit and reserves
    // that many bytes (a response announcing 100 TB threw bad_alloc). Reading the
    // header alone stops there with error::body_limit, which on_read treats as a
    // truncated body.
    c->with_stream([&](auto& stream) {
      http::async_read_header(stream, c->buffer, *x->parser, [self = shared_from_this(), x, c](error_code ec, size_t) {
        if (ec || x->answered || x->parser->is_done()) return self->on_read(x, c, ec);
        c->with_stream([&](auto& s) {
          http::async_read(s, c->buffer, *x->parser,
                           [self, x, c](error_code ec2, size_t) { self->on_read(x, c, ec2); });
        });
      });
    });
  }

  void on_read(const ExchangePtr& x, const ConnectionPtr& c, error_code ec) {
    if (x->answered) return discard(c);
    const bool truncated = ec == http::error::body_limit && x->parser->is_header_done();
    if (ec && !truncated) return fail_exchange(x, c, ec);
    auto& res = x->parser->get();
    HttpResult r;
    r.status = static_cast<int>(res.result_int());
    if (auto it = res.find(http::field::retry_after); it != res.end()) r.retry_after = std::string(it->value());
    r.body = std::move(res.body());
    if (truncated && r.body.empty()) {
      // The body was refused at its header (Content-Length over the limit): keep
      // what already arrived behind the header, for the error's excerpt.
      const auto data = c->buffer.data();
      r.body.assign(static_cast<const char*>(data.data()), std::min(data.size(), options.max_response_body_bytes));
    }
    if (r.body.size() > options.max_response_body_bytes) r.body.resize(options.max_response_body_bytes);
    c->served++;
    x->conn.reset();
    if (truncated || !res.keep_alive() || stopping) {
      drop(c);
    } else {
      idle.push_back(c);
    }
    answer(x, std::move(r));
    pump();
  }

  // A failure after the request was bound to a live connection. On a reused
  // connection that broke before any response byte, the server most likely
  // closed it while idle: send once more on a fresh connection, in its slot.
  void fail_exchange(const ExchangePtr& x, const ConnectionPtr& c, error_code ec) {
    const bool nothing_received = !x->parser->got_some() && c->buffer.size() == 0;
    if (c->served > 0 && nothing_received && !x->retried_fresh && !stopping) {
      c->close();
      x->retried_fresh = true;
      ConnectionPtr fresh = new_connection();
      x->conn = fresh;
      return connect(x, fresh);
    }
    drop(c);
    answer(x, failure(HttpResult::Failure::io, "request to " + dest.authority() + " failed: " + ec.message()));
    pump();
  }

  void on_deadline(const ExchangePtr& x) {
    if (x->answered) return;
    for (auto it = queue.begin(); it != queue.end(); ++it) {
      if (*it == x) {
        queue.erase(it);
        break;
      }
    }
    ConnectionPtr c = x->conn;
    answer(x, failure(HttpResult::Failure::timeout,
                      "timed out after " + std::to_string(x->request.timeout_ms) + " ms" +
                          (c ? "" : " waiting for a free connection to " + dest.authority())));
    if (c) c->close();  // its pending operation ends and drops it
  }

  void answer(const ExchangePtr& x, HttpResult r) {
    if (x->answered) return;
    x->answered = true;
    x->timer.cancel();
    active.erase(x);
    Callback cb = std::move(x->done);
    x->done = nullptr;
    cb(std::move(r));
  }

  // Closes a connection for good and frees its slot. Callers answer their
  // exchange first and pump() after, so the answer (which may open the circuit
  // breaker) is known before the next request is admitted.
  void drop(const ConnectionPtr& c) {
    c->close();
    --open;
  }

  // The exchange on `c` was already answered (deadline or shutdown): free the slot.
  void discard(const ConnectionPtr& c) {
    drop(c);
    pump();
  }

  void close_all() {
    stopping = true;
    std::deque<ExchangePtr> waiting;
    waiting.swap(queue);
    for (auto& x : waiting) answer(x, failure(HttpResult::Failure::shutdown, "shutting down"));
    std::vector<ExchangePtr> running(active.begin(), active.end());
    for (auto& x : running) {
      ConnectionPtr c = x->conn;
      answer(x, failure(HttpResult::Failure::shutdown, "shutting down"));
      if (c) c->close();
    }
    for (auto& c : idle) c->close();
    open -= static_cast<int>(idle.size());
    idle.clear();
  }

  net::io_context& io;
  const HttpDestination dest;
  const HttpClientOptions options;
  std::string host_header;
  std::optional<net::ssl::context> tls_context;
  std::deque<ExchangePtr> queue;    // waiting for a connection, oldest first
  std::set<ExchangePtr> active;     // bound to a connection
  std::vector<ConnectionPtr> idle;  // open, keep-alive, unused
  int open = 0;                     // connections connecting, busy or idle
  bool stopping = false;
};

HttpClientPool::HttpClientPool(net::io_context& io, HttpDestination destination, HttpClientOptions options)
    : impl_(std::make_shared<Impl>(io, std::move(destination), std::move(options))) {}

HttpClientPool::~HttpClientPool() = default;

void HttpClientPool::submit(HttpRequest request, Callback done) { impl_->submit(std::move(request), std::move(done)); }
void HttpClientPool::close_all() { impl_->close_all(); }

}  // namespace pgrelay
