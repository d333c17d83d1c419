// Declared event types and typed payload reading: reasons name the field.
#include <doctest/doctest.h>

#include <pgrelay/payload.hpp>

#include "core/payload_check.hpp"

using namespace pgrelay;

namespace {

std::string doc(const std::string& payload) { return R"({"id":1,"type":"t","payload":)" + payload + "}"; }

struct Address {
  std::string city;
  static void read(PayloadReader& r, Address& out) { r.required("city", out.city); }
};
struct Signup {
  int64_t user_id = 0;
  std::string email;
  std::optional<bool> newsletter;
  std::vector<std::string> tags;
  Address address;
  static void read(PayloadReader& r, Signup& out) {
    r.required("user_id", out.user_id);
    r.required("email", out.email);
    r.optional("newsletter", out.newsletter);
    r.required("tags", out.tags);
    r.required("address", out.address);
  }
};

std::string read_error(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.c_str());
  Signup s;
  PayloadReader r(d);
  Signup::read(r, s);
  return r.error();
}

}  // namespace

TEST_CASE("a payload that fits its declaration passes") {
  EventTypeDecl d{"user.signed_up", {{"email", "string"}, {"user_id", "integer"}, {"tags", "array"}}};
  CHECK_FALSE(check_payload(d, doc(R"({"email": "a@b.c", "user_id": 7, "tags": [], "extra": true})")));
}

TEST_CASE("a payload that misses a field or has the wrong type is rejected with the field named") {
  EventTypeDecl d{"user.signed_up", {{"email", "string"}, {"user_id", "integer"}}};
  CHECK(*check_payload(d, doc(R"({"user_id": 7})")) == "field \"email\" is missing");
  CHECK(*check_payload(d, doc(R"({"email": 5, "user_id": 7})")) == "field \"email\" must be a string, got an integer");
  CHECK(*check_payload(d, doc(R"({"email": "x", "user_id": 7.5})")) ==
        "field \"user_id\" must be an integer, got a number");
  CHECK(*check_payload(d, doc("[1]")) == "payload is not a JSON object");
}

TEST_CASE("a typed payload reads nested structs, arrays and optional fields") {
  rapidjson::Document d;
  d.Parse(R"({"user_id": 3, "email": "e@x", "tags": ["a", "b"], "address": {"city": "Oslo"}})");
  Signup s;
  PayloadReader r(d);
  Signup::read(r, s);
  REQUIRE(r.ok());
  CHECK(s.user_id == 3);
  CHECK(s.tags == std::vector<std::string>{"a", "b"});
  CHECK(s.address.city == "Oslo");
  CHECK_FALSE(s.newsletter.has_value());
}

TEST_CASE("a typed payload that does not fit names the first bad field, nested ones by path") {
  CHECK(read_error(R"({"email": "e", "tags": [], "address": {"city": "x"}})") == "field \"user_id\" is missing");
  CHECK(read_error(R"({"user_id": "3", "email": "e", "tags": [], "address": {}})") ==
        "field \"user_id\": expected an integer, got a string");
  CHECK(read_error(R"({"user_id": 3, "email": "e", "tags": [1], "address": {"city": "x"}})") ==
        "field \"tags[0]\": expected a string, got a number");
  CHECK(read_error(R"({"user_id": 3, "email": "e", "tags": [], "address": {"city": 9}})") ==
        "field \"address.city\": expected a string, got a number");
  CHECK(read_error(R"({"user_id": 3, "email": "e", "tags": [], "address": {"city": "x"}, "newsletter": "yes"})") ==
        "field \"newsletter\": expected a boolean, got a string");
}
