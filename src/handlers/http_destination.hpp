// Where a webhook's requests go: scheme, host, port and target parsed from an
// http:// or https:// URL, with the reason when a URL cannot be used. Pure values.
#pragma once
#include <optional>
#include <string>

namespace pgrelay {

// Where requests go, parsed from an http:// or https:// URL.
struct HttpDestination {
  bool tls = false;
  std::string host;    // name or IP literal, without brackets
  std::string port;    // "80"/"443" when the URL has none
  std::string target;  // path and query, "/" when the URL has none

  // "host:port", as used in error messages and breaker names.
  std::string authority() const;
  // The host as it stands in a URL or a Host header: an IPv6 literal in brackets.
  std::string bracketed_host() const;
  // Whether the host is an IP address (TLS then sends no SNI and checks the address).
  bool host_is_ip_literal() const;
  // Parses `url`; on failure returns nullopt and sets `error`.
  static std::optional<HttpDestination> parse(const std::string& url, std::string* error);
};

}  // namespace pgrelay
