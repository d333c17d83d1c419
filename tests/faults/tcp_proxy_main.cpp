// tcp_proxy: the fault runs' loopback proxy as a standalone program.
//   tcp_proxy TARGET_PORT [LISTEN_PORT] [CONTROL_FILE]
// Prints the listening port, then forwards until SIGINT/SIGTERM. The mode
// (pass, stall, drop, reset) is the first word of CONTROL_FILE, re-read every
// 100 ms, so `echo stall > CONTROL_FILE` switches it at run time.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>

#include "faults/tcp_proxy.hpp"

namespace {
volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: tcp_proxy TARGET_PORT [LISTEN_PORT] [CONTROL_FILE]\n";
    return 2;
  }
  try {
    const auto target = static_cast<uint16_t>(std::stoi(argv[1]));
    const auto listen = static_cast<uint16_t>(argc > 2 ? std::stoi(argv[2]) : 0);
    const std::string control = argc > 3 ? argv[3] : "";
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGPIPE, SIG_IGN);
    pgrelay::faults::TcpProxy proxy(target, listen);
    std::cout << proxy.port() << std::endl;
    while (!g_stop) {
      if (!control.empty()) {
        std::ifstream f(control);
        std::string word;
        if (f >> word) {
          try {
            const auto mode = pgrelay::faults::parse_proxy_mode(word);
            if (mode != proxy.mode()) proxy.set_mode(mode);
          } catch (const std::exception& e) {
            std::cerr << "tcp_proxy: " << e.what() << "\n";
          }
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  } catch (const std::exception& e) {
    std::cerr << "tcp_proxy: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
