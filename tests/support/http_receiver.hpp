// A real HTTP/1.1 server on 127.0.0.1 for tests of anything that sends HTTP
// (the webhook handler, fault and benchmark runs): scriptable replies per
// request, a record of every request, and a count of accepted connections.
// With Options::tls it serves HTTPS with a self-signed certificate for
// 127.0.0.1 and localhost, generated at start-up; ca_file() is its PEM.
//
// Runs its own thread; every method is thread-safe.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace pgrelay::test {

struct ReceivedRequest {
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  int connection = 0;  // the accepted connection that carried it, counting from 1
  std::chrono::steady_clock::time_point at;

  // The header's value, or "" when absent. `name` in lower case.
  std::string header(const std::string& name) const;
};

// How to answer one request.
struct Reply {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::chrono::milliseconds delay{0};  // answer after this long
  bool never_answer = false;           // read the request, then stay silent (until stop)
  bool close = false;                  // close the connection right after this reply

  static Reply with_status(int status, std::string body = {}) {
    Reply r;
    r.status = status;
    r.body = std::move(body);
    return r;
  }
};

class HttpReceiver {
 public:
  struct Options {
    bool tls = false;
  };
  HttpReceiver();
  explicit HttpReceiver(Options options);
  ~HttpReceiver();  // stops: closes every connection
  HttpReceiver(const HttpReceiver&) = delete;
  HttpReceiver& operator=(const HttpReceiver&) = delete;

  uint16_t port() const;
  // "http://127.0.0.1:<port><path>" (https with TLS).
  std::string url(const std::string& path = "/hook") const;
  // The certificate to trust (TLS only; empty otherwise).
  const std::string& ca_file() const;

  // Replies, in order: each request takes the next scripted reply; once they are
  // used up, the responder answers (by default 200 "ok").
  void script(std::vector<Reply> replies);
  void respond_with(std::function<Reply(const ReceivedRequest&)> responder);

  std::vector<ReceivedRequest> requests() const;
  size_t request_count() const;
  int connections_accepted() const;
  // Closes every open connection now (as a server dropping idle keep-alive connections).
  void close_connections();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// A loopback port with nothing listening on it (bound, then closed at once):
// connecting to it is refused. Also usable as a free port to listen on.
uint16_t closed_port();

}  // namespace pgrelay::test
