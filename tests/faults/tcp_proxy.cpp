// The fault runs' loopback TCP proxy: one thread per connection, poll() with a
// short tick so a mode switch takes effect within ~50 ms.
#include "faults/tcp_proxy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

namespace pgrelay::faults {

ProxyMode parse_proxy_mode(const std::string& name) {
  if (name == "pass") return ProxyMode::pass;
  if (name == "stall") return ProxyMode::stall;
  if (name == "drop") return ProxyMode::drop;
  if (name == "reset") return ProxyMode::reset;
  throw std::invalid_argument("proxy mode \"" + name + "\" is not one of pass, stall, drop, reset");
}

const char* to_string(ProxyMode mode) {
  switch (mode) {
    case ProxyMode::pass: return "pass";
    case ProxyMode::stall: return "stall";
    case ProxyMode::drop: return "drop";
    case ProxyMode::reset: return "reset";
  }
  return "?";
}

namespace {

constexpr int kTickMs = 50;

void close_with_reset(int fd) {
  linger l{1, 0};  // close() then sends RST instead of FIN
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
}

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// Writes all of `n` bytes; false if the peer is gone.
bool write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

struct TcpProxy::Pipe {
  int client = -1;
  int server = -1;
  std::atomic<int> kill{0};  // 1: close with FIN, 2: close with RST
};

TcpProxy::TcpProxy(uint16_t target_port, uint16_t listen_port) : target_port_(target_port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::runtime_error(std::string("proxy: socket: ") + std::strerror(errno));
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = loopback(listen_port);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 128) != 0) {
    const std::string why = std::strerror(errno);
    ::close(listen_fd_);
    throw std::runtime_error("proxy: cannot listen on 127.0.0.1:" + std::to_string(listen_port) + ": " + why);
  }
  socklen_t len = sizeof a;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

TcpProxy::~TcpProxy() {
  stopping_ = true;
  acceptor_.join();
  close_all(false);
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
  ::close(listen_fd_);
}

void TcpProxy::set_mode(ProxyMode mode) {
  mode_ = mode;
  if (mode == ProxyMode::drop) close_all(false);
  if (mode == ProxyMode::reset) close_all(true);
}

void TcpProxy::close_all(bool with_reset) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& p : pipes_) p->kill = with_reset ? 2 : 1;
  pipes_.clear();
}

void TcpProxy::accept_loop() {
  while (!stopping_) {
    pollfd pfd{listen_fd_, POLLIN, 0};
    if (::poll(&pfd, 1, kTickMs) <= 0) continue;
    const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    accepted_++;
    const ProxyMode m = mode_.load();
    if (m == ProxyMode::drop) {
      ::close(client);
      continue;
    }
    if (m == ProxyMode::reset) {
      close_with_reset(client);
      continue;
    }
    const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = loopback(target_port_);
    if (server < 0 || ::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      if (server >= 0) ::close(server);
      close_with_reset(client);  // the target is down: the client sees a refused-like reset
      continue;
    }
    auto pipe = std::make_shared<Pipe>();
    pipe->client = client;
    pipe->server = server;
    std::lock_guard<std::mutex> lock(mu_);
    pipes_.push_back(pipe);
    threads_.emplace_back([this, pipe] { pump(pipe); });
  }
}

void TcpProxy::pump(std::shared_ptr<Pipe> pipe) {
  char buf[64 * 1024];
  bool open = true;
  while (open && !stopping_) {
    if (const int k = pipe->kill.load()) {
      if (k == 2) {
        close_with_reset(pipe->client);
        close_with_reset(pipe->server);
      } else {
        ::close(pipe->client);
        ::close(pipe->server);
      }
      return;
    }
    if (mode_.load() == ProxyMode::stall) {
      std::this_thread::sleep_for(std::chrono::milliseconds(kTickMs));
      continue;
    }
    pollfd pfds[2] = {{pipe->client, POLLIN, 0}, {pipe->server, POLLIN, 0}};
    if (::poll(pfds, 2, kTickMs) <= 0) continue;
    for (int i = 0; i < 2 && open; ++i) {
      if (!(pfds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const int from = i == 0 ? pipe->client : pipe->server;
      const int to = i == 0 ? pipe->server : pipe->client;
      const ssize_t n = ::recv(from, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || !write_all(to, buf, static_cast<size_t>(n))) open = false;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = pipes_.begin(); it != pipes_.end(); ++it) {
      if (*it == pipe) {
        pipes_.erase(it);
        break;
      }
    }
  }
  // A pipe removed by close_all() just now still owns its sockets: close them once.
  const int k = pipe->kill.load();
  if (k == 2) {
    close_with_reset(pipe->client);
    close_with_reset(pipe->server);
  } else {
    ::close(pipe->client);
    ::close(pipe->server);
  }
}

}  // namespace pgrelay::faults
