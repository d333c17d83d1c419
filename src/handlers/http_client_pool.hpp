// A bounded pool of keep-alive HTTP/1.1 connections to one destination
// (scheme + host + port), plain or TLS, for the webhook handler.
//
// Requests beyond the pool's capacity wait in a FIFO queue. Every request has a
// deadline covering its wait, connect, TLS handshake, write and read; connecting
// (resolve + TCP + TLS) has its own shorter limit. A request that fails on a
// *reused* connection before any response byte arrived (the server closed an
// idle keep-alive connection) is sent once more on a fresh connection, never twice.
//
// Threading: everything runs on the io_context given to the constructor; call
// submit() and close_all() only from a thread running that io_context. Callbacks
// run there too. Beast stays inside the .cpp (pimpl).
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "handlers/http_destination.hpp"

namespace boost::asio {
class io_context;
}

namespace pgrelay {

struct HttpClientOptions {
  int pool_size = 8;                           // connections open at once (>= 1)
  int64_t connect_timeout_ms = 5000;           // resolve + TCP connect + TLS handshake
  bool tls_verify = true;                      // verify the server's certificate and name
  std::string ca_file;                         // extra trusted CAs (PEM), besides the system's
  size_t max_response_body_bytes = 64 * 1024;  // the rest of a longer body is not read
};

struct HttpRequest {
  std::vector<std::pair<std::string, std::string>> headers;  // besides Host, User-Agent, Content-Length
  std::string body;                                          // sent with POST
  int64_t timeout_ms = 30000;                                // for the error message only; the deadline decides
  std::chrono::steady_clock::time_point deadline;
  // Asked once, when the request leaves the queue for a connection; returning
  // false answers it with Failure::not_sent instead (a circuit breaker's gate).
  std::function<bool()> admit;
};

struct HttpResult {
  enum class Failure {
    none,      // got a response (any status)
    connect,   // resolve, TCP connect or TLS handshake failed
    timeout,   // the deadline passed
    io,        // the connection broke while sending or reading
    shutdown,  // close_all() was called
    not_sent,  // HttpRequest::admit said no
  };
  Failure failure = Failure::none;
  std::string error;  // what failed, e.g. "connect to api.example.com:443 failed: Connection refused"
  int status = 0;
  std::string retry_after;  // the Retry-After header, if any
  std::string body;         // at most max_response_body_bytes
};

class HttpClientPool {
 public:
  using Callback = std::function<void(HttpResult)>;

  // Throws std::runtime_error if TLS cannot be set up (an unreadable ca_file).
  HttpClientPool(boost::asio::io_context& io, HttpDestination destination, HttpClientOptions options);
  ~HttpClientPool();
  HttpClientPool(const HttpClientPool&) = delete;
  HttpClientPool& operator=(const HttpClientPool&) = delete;

  // POSTs `request` to the destination; calls `done` exactly once.
  void submit(HttpRequest request, Callback done);

  // Closes every connection and answers queued and in-flight requests with
  // Failure::shutdown; later submits are answered the same way at once.
  void close_all();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace pgrelay
