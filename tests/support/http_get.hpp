// A tiny blocking HTTP/1.1 client for tests of the admin server: sends raw
// bytes, reads until the server closes, splits status and body. Header-only.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdint>
#include <string>

namespace pgrelay::test {

struct HttpReply {
  int status = 0;  // 0: no answer (connection refused, closed or timed out)
  std::string headers;
  std::string body;
};

// Opens a TCP connection to 127.0.0.1:port with send/receive timeouts; -1 on failure.
// `receive_buffer` > 0 sets SO_RCVBUF first (before connect: it sets the advertised window).
inline int http_connect(uint16_t port, int timeout_ms = 5000, int receive_buffer = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (receive_buffer > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

inline bool send_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Reads until EOF or timeout and parses the reply.
inline HttpReply read_reply(int fd) {
  std::string raw;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  HttpReply r;
  const auto end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.", 0) != 0 || end == std::string::npos) return r;
  r.status = std::stoi(raw.substr(9, 3));
  r.headers = raw.substr(0, end);
  r.body = raw.substr(end + 4);
  return r;
}

inline HttpReply http_raw(uint16_t port, const std::string& request, int timeout_ms = 5000) {
  const int fd = http_connect(port, timeout_ms);
  if (fd < 0) return {};
  HttpReply r;
  if (send_all(fd, request)) r = read_reply(fd);
  ::close(fd);
  return r;
}

inline HttpReply http_request(uint16_t port, const std::string& method, const std::string& path,
                              const std::string& body = "", const std::string& extra_headers = "") {
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + extra_headers;
  if (!body.empty() || method == "POST") {
    req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  return http_raw(port, req + "\r\n" + body);
}

inline HttpReply http_get(uint16_t port, const std::string& path) { return http_request(port, "GET", path); }

// The value of a Prometheus sample line `name{labels} value` (labels exactly as
// rendered, or empty); -1 when absent.
inline double prom_value(const std::string& text, const std::string& name_and_labels) {
  const std::string needle = "\n" + name_and_labels + " ";
  const auto at = ("\n" + text).find(needle);
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + needle.size() - 1));
}

}  // namespace pgrelay::test
