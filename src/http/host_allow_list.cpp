// The Host check of the admin server (see host_allow_list.hpp for the rule).
#include "http/host_allow_list.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>

namespace pgrelay {
namespace {

std::string normalized(std::string_view name) {
  std::string out(name);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  while (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

bool ipv4_literal(const std::string& s) {
  in_addr a{};
  return ::inet_pton(AF_INET, s.c_str(), &a) == 1;
}

bool ipv6_literal(const std::string& s) {
  in6_addr a{};
  return ::inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

}  // namespace

HostAllowList::HostAllowList(const std::string& listen_host, const std::vector<std::string>& allowed) {
  std::string host = listen_host;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (!host.empty()) names_.push_back(normalized(host));
  for (const auto& a : allowed) names_.push_back(normalized(a));
}

bool HostAllowList::allows(std::string_view header) const {
  while (!header.empty() && (header.front() == ' ' || header.front() == '\t')) header.remove_prefix(1);
  while (!header.empty() && (header.back() == ' ' || header.back() == '\t')) header.remove_suffix(1);
  if (header.empty()) return true;
  std::string host;
  if (header.front() == '[') {
    const auto close = header.find(']');
    if (close == std::string_view::npos) return false;
    const auto rest = header.substr(close + 1);
    if (!rest.empty() && (rest.front() != ':' || rest.find_first_not_of("0123456789", 1) != std::string_view::npos)) {
      return false;
    }
    return ipv6_literal(std::string(header.substr(1, close - 1)));
  }
  const auto colon = header.rfind(':');
  if (colon != std::string_view::npos) {
    if (header.find_first_not_of("0123456789", colon + 1) != std::string_view::npos) return false;
    header = header.substr(0, colon);
  }
  host = normalized(header);
  if (host.empty()) return false;
  if (ipv4_literal(host)) return true;
  if (host == "localhost") return true;
  if (host.size() > 10 && host.compare(host.size() - 10, 10, ".localhost") == 0) return true;
  return std::find(names_.begin(), names_.end(), host) != names_.end();
}

}  // namespace pgrelay
