// Pieces of the admin server that need no socket: token comparison and the
// listen address.
#include <doctest/doctest.h>

#include "http/admin_server.hpp"
#include "http/bearer_auth.hpp"
#include "http/host_allow_list.hpp"

using namespace pgrelay;

TEST_CASE("a bearer token matches only when it is exactly the configured one") {
  CHECK(bearer_matches("Bearer s3cret", "s3cret"));
  CHECK(bearer_matches("bearer s3cret", "s3cret"));  // the scheme is case-insensitive
  CHECK_FALSE(bearer_matches("Bearer S3cret", "s3cret"));
  CHECK_FALSE(bearer_matches("Bearer s3cre", "s3cret"));
  CHECK_FALSE(bearer_matches("Bearer s3cret ", "s3cret"));
  CHECK_FALSE(bearer_matches("Bearer s3cretX", "s3cret"));
  CHECK_FALSE(bearer_matches("Basic s3cret", "s3cret"));
  CHECK_FALSE(bearer_matches("Bearer\ts3cret", "s3cret"));
  CHECK_FALSE(bearer_matches("s3cret", "s3cret"));
  CHECK_FALSE(bearer_matches("", "s3cret"));
  CHECK_FALSE(bearer_matches("Bearer ", ""));  // an empty token never authorizes
}

TEST_CASE("a listen address splits into host and port, and a bad one is a readable error") {
  CHECK(parse_listen_address("127.0.0.1:9187") == std::make_pair(std::string("127.0.0.1"), uint16_t{9187}));
  CHECK(parse_listen_address(":9187") == std::make_pair(std::string("0.0.0.0"), uint16_t{9187}));
  CHECK(parse_listen_address("[::1]:80") == std::make_pair(std::string("::1"), uint16_t{80}));
  CHECK(parse_listen_address("localhost:0").second == 0);
  CHECK_THROWS_WITH_AS(parse_listen_address("9187"), doctest::Contains("host:port"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_listen_address("h:99999"), doctest::Contains("0-65535"), std::invalid_argument);
  CHECK_THROWS_AS(parse_listen_address("h:12x"), std::invalid_argument);
}

TEST_CASE("the Host check passes addresses, localhost and configured names, and refuses any other name") {
  const HostAllowList any_address("0.0.0.0", {"pgrelay.internal"});
  for (const char* ok : {"127.0.0.1", "127.0.0.1:9187", "10.1.2.3:80", "[::1]:9187", "[fe80::1]", "localhost",
                         "LOCALHOST:9187", "app.localhost", "pgrelay.internal", "PgRelay.Internal.:9187", ""}) {
    CAPTURE(ok);
    CHECK(any_address.allows(ok));
  }
  for (const char* bad : {"attacker.example", "attacker.example:9187", "pgrelay.internal.attacker.example",
                          "localhost.attacker.example", "127.0.0.1.nip.io", "[::1", "[::1]x", "127.0.0.1:x", ":9187"}) {
    CAPTURE(bad);
    CHECK_FALSE(any_address.allows(bad));
  }
  // A listen address given as a name allows that name.
  CHECK(HostAllowList("relay-0.pgrelay", {}).allows("relay-0.pgrelay:9187"));
  CHECK_FALSE(HostAllowList("relay-0.pgrelay", {}).allows("relay-1.pgrelay:9187"));
}
