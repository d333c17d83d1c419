// A loopback TCP proxy for fault runs: forwards 127.0.0.1:<listen port> to
// 127.0.0.1:<target port> and can be switched at run time between
//   pass   forward bytes both ways;
//   stall  keep every connection open but move no bytes (a blackhole; new
//          connections are accepted and stall too); pass resumes them;
//   drop   close every connection (FIN) and close new ones at once;
//   reset  abort every connection with a TCP RST and reset new ones at once.
// Owns one accept thread and one thread per proxied connection; thread-safe.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace pgrelay::faults {

enum class ProxyMode { pass, stall, drop, reset };

// "pass" -> ProxyMode::pass...; throws std::invalid_argument for anything else.
ProxyMode parse_proxy_mode(const std::string& name);
const char* to_string(ProxyMode mode);

class TcpProxy {
 public:
  // Listens on 127.0.0.1:listen_port (0 picks a free port) and forwards to
  // 127.0.0.1:target_port. Throws std::runtime_error if it cannot listen.
  TcpProxy(uint16_t target_port, uint16_t listen_port = 0);
  ~TcpProxy();  // closes every connection and joins every thread
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  uint16_t port() const { return port_; }
  void set_mode(ProxyMode mode);
  ProxyMode mode() const { return mode_.load(); }
  // Connections accepted since start.
  int accepted() const { return accepted_.load(); }

 private:
  struct Pipe;
  void accept_loop();
  void pump(std::shared_ptr<Pipe> pipe);
  void close_all(bool with_reset);

  uint16_t target_port_;
  uint16_t port_ = 0;
  int listen_fd_ = -1;
  std::atomic<ProxyMode> mode_{ProxyMode::pass};
  std::atomic<bool> stopping_{false};
  std::atomic<int> accepted_{0};
  std::mutex mu_;
  std::vector<std::shared_ptr<Pipe>> pipes_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

}  // namespace pgrelay::faults
