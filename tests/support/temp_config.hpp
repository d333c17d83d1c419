// A config file for child-process tests, removed on destruction. Header-only.
#pragma once
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace pgrelay::test {

struct TempConfig {
  std::string path;
  explicit TempConfig(const std::string& json) {
    char buf[] = "/tmp/pgrelay-ops-config-XXXXXX";
    const int fd = ::mkstemp(buf);
    ::close(fd);
    path = buf;
    std::ofstream(path) << json;
  }
  ~TempConfig() { ::unlink(path.c_str()); }
  TempConfig(const TempConfig&) = delete;
};

}  // namespace pgrelay::test
