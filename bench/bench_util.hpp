// Small helpers the bench programs share: flags, wall-clock micros, percentiles.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace bench {

// "--name value" pairs; a flag without a value is "1".
inline std::map<std::string, std::string> parse_flags(int argc, char** argv) {
  std::map<std::string, std::string> out;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) throw std::invalid_argument("unexpected argument " + a);
    a = a.substr(2);
    if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) out[a] = argv[++i];
    else out[a] = "1";
  }
  return out;
}

inline std::string flag(const std::map<std::string, std::string>& f, const std::string& k, const std::string& dflt) {
  auto it = f.find(k);
  return it == f.end() ? dflt : it->second;
}

inline int64_t flag_int(const std::map<std::string, std::string>& f, const std::string& k, int64_t dflt) {
  auto it = f.find(k);
  return it == f.end() ? dflt : std::stoll(it->second);
}

// Wall-clock microseconds since the epoch: comparable across processes on one machine.
inline int64_t wall_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Nearest-rank percentile of sorted values; p in [0, 100].
inline double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(p / 100.0 * static_cast<double>(sorted.size()) + 0.999999);
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

}  // namespace bench
