// A fast keep-alive HTTP/1.1 receiver for the webhook bench: answers every POST
// with 204 and counts it; GET /count answers the count. One thread, epoll.
// Prints the port it listens on (127.0.0.1, --port 0 picks a free one) on stdout.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>

namespace {

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

// Length of the first complete request in `buf` (headers + body), or 0 if incomplete.
size_t request_length(const std::string& buf, bool* is_get) {
  const size_t end = buf.find("\r\n\r\n");
  if (end == std::string::npos) return 0;
  *is_get = buf.compare(0, 4, "GET ") == 0;
  std::string head = buf.substr(0, end);
  std::transform(head.begin(), head.end(), head.begin(), [](unsigned char c) { return std::tolower(c); });
  const size_t body_at = end + 4;
  const size_t cl = head.find("\r\ncontent-length:");
  if (cl != std::string::npos) {
    const size_t len = std::strtoul(head.c_str() + cl + 17, nullptr, 10);
    return buf.size() >= body_at + len ? body_at + len : 0;
  }
  if (head.find("\r\ntransfer-encoding: chunked") != std::string::npos) {
    const size_t last = buf.find("\r\n0\r\n\r\n", end);
    if (last != std::string::npos) return last + 7;
    if (buf.compare(body_at, 5, "0\r\n\r\n") == 0) return body_at + 5;
    return 0;
  }
  return body_at;
}

}  // namespace

int main(int argc, char** argv) {
  int port = argc > 2 && std::string(argv[1]) == "--port" ? std::atoi(argv[2]) : 0;
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGPIPE, SIG_IGN);
  const int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(lfd, 512) != 0) {
    std::perror("http_sink: bind/listen");
    return 1;
  }
  socklen_t alen = sizeof addr;
  getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &alen);
  std::printf("%d\n", ntohs(addr.sin_port));
  std::fflush(stdout);

  const int ep = epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  std::unordered_map<int, std::string> bufs;
  long long count = 0;
  epoll_event events[64];
  char chunk[65536];
  const char kNoContent[] = "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n";
  while (!g_stop) {
    const int n = epoll_wait(ep, events, 64, 200);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == lfd) {
        int c;
        while ((c = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK)) >= 0) {
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
          bufs[c];
        }
        continue;
      }
      std::string& buf = bufs[fd];
      bool closed = false;
      for (;;) {
        const ssize_t r = read(fd, chunk, sizeof chunk);
        if (r > 0) {
          buf.append(chunk, static_cast<size_t>(r));
          continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) closed = true;
        break;
      }
      std::string reply;
      bool is_get = false;
      size_t len;
      while ((len = request_length(buf, &is_get)) > 0) {
        if (is_get) {
          const std::string body = std::to_string(count);
          reply += "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
                   "\r\n\r\n" + body;
        } else {
          ++count;
          reply += kNoContent;
        }
        buf.erase(0, len);
      }
      if (!reply.empty() && write(fd, reply.data(), reply.size()) < 0) closed = true;
      if (closed) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        close(fd);
        bufs.erase(fd);
      }
    }
  }
  std::fprintf(stderr, "http_sink: served %lld requests\n", count);
  return 0;
}
