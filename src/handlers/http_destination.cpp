// Parsing a webhook URL into where its requests go (handlers/http_destination.hpp).
#include "handlers/http_destination.hpp"

#include <boost/asio/ip/address.hpp>

namespace pgrelay {

std::string HttpDestination::authority() const { return bracketed_host() + ":" + port; }

std::string HttpDestination::bracketed_host() const {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

bool HttpDestination::host_is_ip_literal() const {
  boost::system::error_code ec;
  boost::asio::ip::make_address(host, ec);
  return !ec;
}

std::optional<HttpDestination> HttpDestination::parse(const std::string& url, std::string* error) {
  HttpDestination d;
  std::string rest;
  if (url.rfind("https://", 0) == 0) {
    d.tls = true;
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else {
    *error = "must start with http:// or https://";
    return std::nullopt;
  }
  if (const size_t hash = rest.find('#'); hash != std::string::npos) rest.erase(hash);
  const size_t path_at = rest.find_first_of("/?");
  std::string authority = rest.substr(0, path_at);
  d.target = path_at == std::string::npos ? "/" : rest.substr(path_at);
  if (d.target[0] == '?') d.target = "/" + d.target;
  if (authority.find('@') != std::string::npos) {
    *error = "credentials in the URL are not supported (use headers)";
    return std::nullopt;
  }
  std::string port;
  if (!authority.empty() && authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == std::string::npos) {
      *error = "has an unclosed [ in the host";
      return std::nullopt;
    }
    d.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') {
        *error = "has junk after the IPv6 address";
        return std::nullopt;
      }
      port = authority.substr(close + 2);
    }
  } else {
    const size_t colon = authority.rfind(':');
    d.host = authority.substr(0, colon);
    if (colon != std::string::npos) port = authority.substr(colon + 1);
  }
  if (d.host.empty()) {
    *error = "has no host";
    return std::nullopt;
  }
  if (port.empty()) port = d.tls ? "443" : "80";
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) < 1 ||
      std::stoi(port) > 65535) {
    *error = "has an invalid port \"" + port + "\"";
    return std::nullopt;
  }
  d.port = port;
  return d;
}

}  // namespace pgrelay
