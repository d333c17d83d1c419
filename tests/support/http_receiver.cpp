// The test HTTP(S) server: Beast sessions on one io_context thread, plus a
// self-signed certificate made with the OpenSSL API.
#include "support/http_receiver.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <cstdio>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

namespace pgrelay::test {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Writes a fresh EC key and a self-signed certificate for 127.0.0.1/localhost
// into `dir`; returns {cert path, key path}.
std::pair<std::string, std::string> make_self_signed(const std::string& dir) {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (!key) throw std::runtime_error("http_receiver: EC key generation failed");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), static_cast<long>(::getpid()));
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("pgrelay test"), -1, -1,
                             0);
  X509_set_issuer_name(cert, name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair<int, const char*>{NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost"},
                            {NID_basic_constraints, "critical,CA:TRUE"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    if (!ext) throw std::runtime_error("http_receiver: cannot build certificate extension");
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }
  X509_sign(cert, key, EVP_sha256());
  const std::string cert_path = dir + "/cert.pem", key_path = dir + "/key.pem";
  FILE* f = std::fopen(cert_path.c_str(), "w");
  PEM_write_X509(f, cert);
  std::fclose(f);
  f = std::fopen(key_path.c_str(), "w");
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  X509_free(cert);
  EVP_PKEY_free(key);
  return {cert_path, key_path};
}

struct Session {
  virtual ~Session() = default;
  virtual void close() = 0;
};

}  // namespace

std::string ReceivedRequest::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

struct HttpReceiver::Impl : std::enable_shared_from_this<HttpReceiver::Impl> {
  explicit Impl(Options o) : options(o), acceptor(io) {
    if (options.tls) {
      char tmpl[] = "/tmp/pgrelay-receiver-XXXXXX";
      if (!::mkdtemp(tmpl)) throw std::runtime_error("http_receiver: mkdtemp failed");
      dir = tmpl;
      auto [cert, key] = make_self_signed(dir);
      ca_file = cert;
      tls.emplace(net::ssl::context::tls_server);
      tls->use_certificate_chain_file(cert);
      tls->use_private_key_file(key, net::ssl::context::pem);
    }
    tcp::endpoint ep(net::ip::make_address("127.0.0.1"), 0);
    acceptor.open(ep.protocol());
    acceptor.set_option(net::socket_base::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen(net::socket_base::max_listen_connections);
    port = acceptor.local_endpoint().port();
  }

  void start() {
    accept();
    thread = std::thread([this] { io.run(); });
  }

  void stop() {
    net::post(io, [self = shared_from_this()] {
      error_code ec;
      self->acceptor.close(ec);
      self->close_sessions();  // every pending operation ends, so run() returns
    });
    if (thread.joinable()) thread.join();
    if (!dir.empty()) {
      std::remove((dir + "/cert.pem").c_str());
      std::remove((dir + "/key.pem").c_str());
      ::rmdir(dir.c_str());
    }
  }

  void accept() {
    acceptor.async_accept([self = shared_from_this()](error_code ec, tcp::socket socket) {
      if (ec) return;  // closed at stop
      int number;
      {
        std::lock_guard<std::mutex> lock(self->mutex);
        number = ++self->accepted;
      }
      if (self->tls) {
        auto s =
            std::make_shared<Conn<beast::ssl_stream<beast::tcp_stream>>>(self, number, std::move(socket), &*self->tls);
        s->handshake();
      } else {
        auto s = std::make_shared<Conn<beast::tcp_stream>>(self, number, std::move(socket), nullptr);
        s->read();
      }
      self->accept();
    });
  }

  void close_sessions() {
    auto open = std::move(sessions);
    sessions.clear();
    for (auto& [n, s] : open) s->close();
  }

  Reply next_reply(const ReceivedRequest& r) {
    std::lock_guard<std::mutex> lock(mutex);
    received.push_back(r);
    if (!scripted.empty()) {
      Reply reply = std::move(scripted.front());
      scripted.pop_front();
      return reply;
    }
    if (responder) return responder(r);
    return Reply::with_status(200, "ok");
  }

  // One accepted connection, plain or TLS.
  template <typename Stream>
  struct Conn : Session, std::enable_shared_from_this<Conn<Stream>> {
    Conn(std::shared_ptr<Impl> o, int n, tcp::socket socket, net::ssl::context* ctx)
        : owner(std::move(o)), number(n), stream(make(std::move(socket), ctx)), timer(owner->io) {}
    static Stream make(tcp::socket socket, net::ssl::context* ctx) {
      if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
        (void)ctx;
        return Stream(std::move(socket));
      } else {
        return Stream(beast::tcp_stream(std::move(socket)), *ctx);
      }
    }
    void handshake() {
      owner->sessions[number] = this->shared_from_this();
      if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
        stream.async_handshake(net::ssl::stream_base::server, [self = this->shared_from_this()](error_code ec) {
          if (!ec) self->read();
        });
      }
    }
    void read() {
      owner->sessions[number] = this->shared_from_this();
      request.emplace();
      request->body_limit(64 * 1024 * 1024);
      http::async_read(stream, buffer, *request, [self = this->shared_from_this()](error_code ec, size_t) {
        if (ec) return self->end();
        self->on_request();
      });
    }
    void on_request() {
      auto& m = request->get();
      ReceivedRequest r;
      r.method = std::string(m.method_string());
      r.target = std::string(m.target());
      for (const auto& f : m) r.headers[lower(std::string(f.name_string()))] = std::string(f.value());
      r.body = m.body();
      r.connection = number;
      r.at = std::chrono::steady_clock::now();
      const bool keep_alive = m.keep_alive();
      Reply reply = owner->next_reply(r);
      if (reply.never_answer) return;  // stays open, silent, until stop or close
      response.emplace(static_cast<http::status>(reply.status), 11);
      for (const auto& [k, v] : reply.headers) response->set(k, v);
      response->body() = reply.body;
      response->keep_alive(keep_alive && !reply.close);
      response->prepare_payload();
      if (reply.delay.count() > 0) {
        timer.expires_after(reply.delay);
        timer.async_wait([self = this->shared_from_this()](error_code ec) {
          if (!ec) self->write();
        });
      } else {
        write();
      }
    }
    void write() {
      http::async_write(stream, *response, [self = this->shared_from_this()](error_code ec, size_t) {
        if (ec || !self->response->keep_alive()) return self->end();
        self->read();
      });
    }
    void end() {
      close();
      owner->sessions.erase(number);
    }
    void close() override {
      error_code ec;
      timer.cancel();
      auto& sock = beast::get_lowest_layer(stream).socket();
      sock.shutdown(tcp::socket::shutdown_both, ec);
      sock.close(ec);
    }

    std::shared_ptr<Impl> owner;
    int number;
    Stream stream;
    net::steady_timer timer;
    beast::flat_buffer buffer;
    std::optional<http::request_parser<http::string_body>> request;
    std::optional<http::response<http::string_body>> response;
  };

  Options options;
  net::io_context io;
  tcp::acceptor acceptor;
  std::optional<net::ssl::context> tls;
  std::string dir, ca_file;
  uint16_t port = 0;
  std::thread thread;
  std::map<int, std::shared_ptr<Session>> sessions;  // open connections; io thread only

  mutable std::mutex mutex;  // guards the fields below
  int accepted = 0;
  std::vector<ReceivedRequest> received;
  std::deque<Reply> scripted;
  std::function<Reply(const ReceivedRequest&)> responder;
};

HttpReceiver::HttpReceiver() : HttpReceiver(Options{}) {}

HttpReceiver::HttpReceiver(Options options) : impl_(std::make_shared<Impl>(options)) { impl_->start(); }

HttpReceiver::~HttpReceiver() { impl_->stop(); }

uint16_t HttpReceiver::port() const { return impl_->port; }

std::string HttpReceiver::url(const std::string& path) const {
  return std::string(impl_->tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(impl_->port) + path;
}

const std::string& HttpReceiver::ca_file() const { return impl_->ca_file; }

void HttpReceiver::script(std::vector<Reply> replies) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  for (auto& r : replies) impl_->scripted.push_back(std::move(r));
}

void HttpReceiver::respond_with(std::function<Reply(const ReceivedRequest&)> responder) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->responder = std::move(responder);
}

std::vector<ReceivedRequest> HttpReceiver::requests() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->received;
}

size_t HttpReceiver::request_count() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->received.size();
}

int HttpReceiver::connections_accepted() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->accepted;
}

void HttpReceiver::close_connections() {
  std::promise<void> done;
  net::post(impl_->io, [impl = impl_, &done] {
    impl->close_sessions();
    done.set_value();
  });
  done.get_future().wait();
}

uint16_t closed_port() {
  net::io_context io;
  net::ip::tcp::acceptor a(io, {net::ip::make_address("127.0.0.1"), 0});
  const uint16_t port = a.local_endpoint().port();
  a.close();
  return port;
}

}  // namespace pgrelay::test
