// A throwaway PostgreSQL cluster of one test's own (scripts/pg with its own
// PGRELAY_PG_DIR), for tests that stop, crash or reconfigure the server: never
// the shared test server. Migrated on start; removed on destruction.
#pragma once
#include <unistd.h>

#include <array>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace pgrelay::test {

class OwnCluster {
 public:
  // `tag` names the folder: <checkout>/.pg-<tag>-<pid>.
  explicit OwnCluster(const std::string& tag)
      : dir_(std::string(PGRELAY_SOURCE_DIR) + "/.pg-" + tag + "-" + std::to_string(::getpid())) {
    url_ = run("start");
    while (!url_.empty() && url_.back() == '\n') url_.pop_back();
    if (url_.find("host=") == std::string::npos) throw std::runtime_error("scripts/pg start failed: " + url_);
    const std::string migrated = shell(std::string("'") + PGRELAY_BIN + "' -d '" + url_ + "' migrate 2>&1");
    if (migrated.find("applied") == std::string::npos) throw std::runtime_error("migrate failed: " + migrated);
  }
  ~OwnCluster() { run("stop"); }
  OwnCluster(const OwnCluster&) = delete;

  const std::string& url() const { return url_; }
  void restart_immediate() { run("restart-immediate"); }  // a crash and recovery
  void stop_server() { run("pg-stop"); }
  void start_server() { run("pg-start"); }

 private:
  std::string run(const std::string& verb) {
    return shell("PGRELAY_PG_DIR='" + dir_ + "' '" PGRELAY_SOURCE_DIR "/scripts/pg' " + verb + " 2>&1");
  }
  static std::string shell(const std::string& cmd) {
    std::string out;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return out;
    std::array<char, 512> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
    ::pclose(p);
    return out;
  }

  std::string dir_;
  std::string url_;
};

}  // namespace pgrelay::test
