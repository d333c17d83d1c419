// Which Host header values the admin server answers, against DNS rebinding: a
// page on another origin re-points its own name at the admin address, and the
// browser then sends that name as Host and lets the page read the answers
// (/metrics, /status.json). The attacker owns a name, never an address, so
// these pass: any IP literal, "localhost" and names under ".localhost" (which
// resolve to loopback only, RFC 6761), the host of admin.listen when it is a
// name, and the names of admin.allowed_hosts. A missing Host passes too:
// browsers always send one. Immutable after construction; thread-safe.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace pgrelay {

class HostAllowList {
 public:
  // `listen_host`: the host part of admin.listen; `allowed`: admin.allowed_hosts.
  HostAllowList(const std::string& listen_host, const std::vector<std::string>& allowed);

  // `host_header` as received, with or without ":port".
  bool allows(std::string_view host_header) const;

 private:
  std::vector<std::string> names_;  // lower case, no trailing dot
};

}  // namespace pgrelay
