// Routes event types to handlers: exact names, "prefix.*" patterns and "*".
// An event goes to the union of every matching route's handlers, in config order.
#pragma once
#include <string>
#include <unordered_map>
#include <vector>

#include "core/config.hpp"
#include "store/queue.hpp"

namespace pgrelay {

class Router {
 public:
  explicit Router(std::vector<Route> routes);

  // Handler names for an event type (cached); empty when nothing matches.
  const std::vector<std::string>& handlers_for(const std::string& event_type);

  // The event types this router can deliver, for the claim query: events no
  // route matches stay pending instead of being claimed and dropped.
  TypeFilter type_filter() const;

 private:
  std::vector<Route> routes_;
  std::unordered_map<std::string, std::vector<std::string>> cache_;
};

bool route_matches(const std::string& pattern, const std::string& event_type);

}  // namespace pgrelay
