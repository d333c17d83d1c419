// Route matching and the claim filter it implies.
#include "relay/router.hpp"

#include <algorithm>

namespace pgrelay {

bool route_matches(const std::string& pattern, const std::string& type) {
  if (pattern == "*") return true;
  if (pattern.size() > 2 && pattern.compare(pattern.size() - 2, 2, ".*") == 0) {
    const size_t stem = pattern.size() - 1;  // keep the dot: "orders.*" matches "orders.x", not "ordersx"
    return type.size() > stem && type.compare(0, stem, pattern, 0, stem) == 0;
  }
  return pattern == type;
}

Router::Router(std::vector<Route> routes) : routes_(std::move(routes)) {}

const std::vector<std::string>& Router::handlers_for(const std::string& type) {
  auto it = cache_.find(type);
  if (it != cache_.end()) return it->second;
  std::vector<std::string> names;
  for (const auto& r : routes_) {
    if (!route_matches(r.match, type)) continue;
    for (const auto& h : r.handlers) {
      if (std::find(names.begin(), names.end(), h) == names.end()) names.push_back(h);
    }
  }
  return cache_.emplace(type, std::move(names)).first->second;
}

TypeFilter Router::type_filter() const {
  TypeFilter f;
  for (const auto& r : routes_) {
    if (r.match == "*") f.everything = true;
    else if (r.match.size() > 2 && r.match.compare(r.match.size() - 2, 2, ".*") == 0)
      f.prefixes.push_back(r.match.substr(0, r.match.size() - 1));
    else f.exact.push_back(r.match);
  }
  return f;
}

}  // namespace pgrelay
