// Routing: exact names, "prefix.*", "*", and the claim filter derived from them.
#include <doctest/doctest.h>

#include "relay/router.hpp"

using namespace pgrelay;

TEST_CASE("a prefix pattern matches below its dot and nothing else") {
  CHECK(route_matches("orders.*", "orders.insert"));
  CHECK(route_matches("orders.*", "orders.a.b"));
  CHECK_FALSE(route_matches("orders.*", "orders"));
  CHECK_FALSE(route_matches("orders.*", "ordersx.insert"));
  CHECK(route_matches("*", "anything"));
  CHECK(route_matches("a.b", "a.b"));
  CHECK_FALSE(route_matches("a.b", "a.bc"));
}

TEST_CASE("an event goes to the union of matching routes' handlers, without repeats") {
  Router r({{"orders.*", {"print", "mail"}}, {"orders.insert", {"mail", "audit"}}, {"users.*", {"x"}}});
  CHECK(r.handlers_for("orders.insert") == std::vector<std::string>{"print", "mail", "audit"});
  CHECK(r.handlers_for("orders.delete") == std::vector<std::string>{"print", "mail"});
  CHECK(r.handlers_for("other").empty());
}

TEST_CASE("the claim filter lists exact types and prefixes unless a route takes everything") {
  TypeFilter f = Router({{"orders.*", {"a"}}, {"ping", {"a"}}}).type_filter();
  CHECK_FALSE(f.everything);
  CHECK(f.exact == std::vector<std::string>{"ping"});
  CHECK(f.prefixes == std::vector<std::string>{"orders."});
  CHECK(Router(std::vector<Route>{Route{"*", {"a"}}}).type_filter().everything);
}
