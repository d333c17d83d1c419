// Example: link the pgrelay library and handle `orders.paid` events with a typed
// struct, in-process. Run: typed_handler "<connection string>" (Ctrl-C stops it).
// Needs only the installed public headers and libpgrelay; build it with
// examples/CMakeLists.txt (find_package) or
//   c++ -std=c++17 typed_handler.cpp $(pkg-config --cflags --libs pgrelay) -pthread
#include <signal.h>

#include <cstdio>
#include <iostream>
#include <thread>

#include <pgrelay/pgrelay.hpp>

namespace pr = pgrelay::api;

struct Customer {
  std::string email;
  static void read(pr::PayloadReader& r, Customer& out) { r.required("email", out.email); }
};

struct OrderPaid {
  int64_t order_id = 0;
  double amount = 0;
  Customer customer;
  std::optional<std::string> coupon;
  static void read(pr::PayloadReader& r, OrderPaid& out) {
    r.required("order_id", out.order_id);
    r.required("amount", out.amount);
    r.required("customer", out.customer);
    r.optional("coupon", out.coupon);
  }
};

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: typed_handler <connection string>\n";
    return 2;
  }
  // The environment's PGRELAY_* overrides apply; a bad one is a usage error.
  std::optional<pr::Config> config;
  try {
    config = pr::Config::defaults();
  } catch (const pr::ConfigError& e) {
    std::cerr << "typed_handler: " << e.what() << "\n";
    return 2;
  }
  config->set_database_url(argv[1]);
  pr::Relay relay(*config);
  pr::on<OrderPaid>(relay, "orders.paid", [](const pr::EventInfo& e, const OrderPaid& p) {
    std::printf("event %lld: order %lld paid %.2f by %s%s\n", static_cast<long long>(e.id),
                static_cast<long long>(p.order_id), p.amount, p.customer.email.c_str(),
                p.coupon ? (" with coupon " + *p.coupon).c_str() : "");
    std::fflush(stdout);
    return pr::Outcome::ok();
  });

  // Stop on SIGINT/SIGTERM: block them everywhere, wait for one on a thread.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([&] {
    int sig;
    sigwait(&set, &sig);
    relay.request_stop();
  }).detach();
  try {
    relay.run();
  } catch (const std::exception& e) {
    std::cerr << "typed_handler: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
