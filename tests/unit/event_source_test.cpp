// Delivery ids: the database's prefix before the event id, and which prefixes are safe.
#include <doctest/doctest.h>

#include "core/event_source.hpp"

using namespace pgrelay;

TEST_CASE("a delivery id is the prefix, a dash and the event id, or the bare id without a prefix") {
  CHECK(delivery_id(EventSource{"3f9a0c1d2e4b5a69", "shop"}, 42) == "3f9a0c1d2e4b5a69-42");
  CHECK(delivery_id(EventSource{"", "shop"}, 42) == "42");
}

TEST_CASE("an id prefix is 1 to 64 letters, digits, underscores or dashes") {
  CHECK(valid_id_prefix("3f9a0c1d2e4b5a69"));
  CHECK(valid_id_prefix("staging_EU-2"));
  CHECK(valid_id_prefix(std::string(64, 'a')));
  CHECK_FALSE(valid_id_prefix(""));
  CHECK_FALSE(valid_id_prefix(std::string(65, 'a')));
  CHECK_FALSE(valid_id_prefix("a.b"));  // '.' joins Standard Webhooks' signed content
  CHECK_FALSE(valid_id_prefix("a b"));
  CHECK_FALSE(valid_id_prefix("a\r\nx-evil: 1"));
}
