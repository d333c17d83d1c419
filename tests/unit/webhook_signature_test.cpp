// Standard Webhooks signatures: the published test vector, raw secrets, base64.
#include <doctest/doctest.h>

#include "handlers/webhook_signature.hpp"

using namespace pgrelay;

TEST_CASE("a whsec_ secret signs the Standard Webhooks test vector correctly") {
  // From the Standard Webhooks reference libraries' tests; checked with python3 hmac.
  const auto key = webhook_signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
  REQUIRE(key.has_value());
  CHECK(webhook_signature(*key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, "{\"test\": 2432232314}") ==
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

TEST_CASE("a webhook secret without the whsec_ prefix signs with its raw bytes") {
  // python3: base64(hmac.new(b"plain-secret", b'42.1700000000.{"id":42}', sha256).digest())
  const auto key = webhook_signing_key("plain-secret");
  REQUIRE(key.has_value());
  CHECK(*key == "plain-secret");
  CHECK(webhook_signature(*key, "42", 1700000000, "{\"id\":42}") == "v1,IABZgQaL814dG8boJWWmKwn73yXS83iGHTcWjzkPYAo=");
}

TEST_CASE("a whsec_ webhook secret that is not base64 is refused") {
  CHECK_FALSE(webhook_signing_key("whsec_not base64!").has_value());
  CHECK_FALSE(webhook_signing_key("whsec_abc").has_value());
}

TEST_CASE("base64 round-trips bytes of every length, padding included") {
  const std::string bytes("\x00\x01\xfe\xff hello", 10);
  for (size_t n = 0; n <= bytes.size(); ++n) {
    const std::string in = bytes.substr(0, n);
    CAPTURE(n);
    CHECK(base64_decode(base64_encode(in)) == in);
  }
  CHECK(base64_encode("hi") == "aGk=");
  CHECK(base64_decode("aGk=") == std::string("hi"));
}
