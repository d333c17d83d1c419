// A real PgBouncer (Debian's package) in front of a test server, in transaction
// pooling mode, on a free loopback port, with a folder of its own; stopped and
// removed on destruction. As root it switches to the `postgres` user (-u):
// PgBouncer refuses to run as root.
#pragma once
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>

#include "support/child_process.hpp"
#include "support/ports.hpp"

namespace pgrelay::test {

class PgBouncer {
 public:
  // `server` is a libpq keyword/value string with host (a socket folder or an address),
  // port and user, as scripts/pg prints it; every database on it is served.
  explicit PgBouncer(const std::string& server, const std::string& pool_mode = "transaction") : port_(free_port()) {
    const std::string binary = "/usr/sbin/pgbouncer";
    if (::access(binary.c_str(), X_OK) != 0) {
      throw std::runtime_error("pgbouncer not found: install the Debian package pgbouncer (scripts/test installs it)");
    }
    char dir[] = "/tmp/pgrelay-pgbouncer-XXXXXX";
    if (::mkdtemp(dir) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = dir;
    user_ = field(server, "user");
    std::ofstream(dir_ + "/users.txt") << '"' << user_ << "\" \"\"\n";
    std::ofstream(dir_ + "/pgbouncer.ini")
        << "[databases]\n* = host=" << field(server, "host") << " port=" << field(server, "port") << "\n"
        << "[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = " << port_ << "\nunix_socket_dir =\n"
        << "auth_type = trust\nauth_file = " << dir_ << "/users.txt\npool_mode = " << pool_mode << "\n"
        << "max_client_conn = 200\ndefault_pool_size = 8\nlogfile = " << dir_ << "/pgbouncer.log\n"
        << "pidfile = " << dir_ << "/pgbouncer.pid\nignore_startup_parameters = extra_float_digits\n";
    std::vector<std::string> argv = {binary, dir_ + "/pgbouncer.ini"};
    if (::geteuid() == 0) {
      // PgBouncer's own -u, not runuser: the child must be PgBouncer itself, so that
      // killing it on destruction leaves no server behind.
      std::filesystem::permissions(dir_, std::filesystem::perms::all);
      argv.insert(argv.begin() + 1, {"-u", "postgres"});
    }
    child_ = std::make_unique<ChildProcess>(std::move(argv));
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!accepts_connections(port_)) {
      if (child_->wait(std::chrono::milliseconds(0))) {
        throw std::runtime_error("pgbouncer exited at start: " + child_->err() + log());
      }
      if (std::chrono::steady_clock::now() > until) throw std::runtime_error("pgbouncer did not start: " + log());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~PgBouncer() {
    child_.reset();  // SIGKILL if still running
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  PgBouncer(const PgBouncer&) = delete;

  // A connection string to `dbname` through the pooler.
  std::string url(const std::string& dbname) const {
    return "host=127.0.0.1 port=" + std::to_string(port_) + " user=" + user_ + " dbname=" + dbname;
  }
  std::string log() const {
    std::ifstream in(dir_ + "/pgbouncer.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  static std::string field(const std::string& conninfo, const std::string& key) {
    std::smatch m;
    if (!std::regex_search(conninfo, m, std::regex("(^| )" + key + "=([^ ]+)"))) {
      throw std::runtime_error("PgBouncer: no " + key + "= in " + conninfo);
    }
    return m[2];
  }

  uint16_t port_;
  std::string dir_;
  std::string user_;
  std::unique_ptr<ChildProcess> child_;
};

}  // namespace pgrelay::test
