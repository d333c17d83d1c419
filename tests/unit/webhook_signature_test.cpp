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

TEST_CASE("a whsec_ webhook secret that is not base64 of a non-empty key is refused") {
  CHECK_FALSE(webhook_signing_key("whsec_not base64!").has_value());
  CHECK_FALSE(webhook_signing_key("whsec_a").has_value());      // one character is no byte
  CHECK_FALSE(webhook_signing_key("whsec_QUJD=").has_value());  // padding that does not complete a group
  CHECK_FALSE(webhook_signing_key("whsec_").has_value());       // an empty key signs nothing
}

TEST_CASE("an unpadded whsec_ secret signs with the same key as its padded form, as the reference library reads it") {
  // 32 random bytes: 44 characters padded, 43 unpadded (how some providers issue them).
  const std::string padded = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD+r6DNVIHYb4=";
  const std::string unpadded = padded.substr(0, padded.size() - 1);
  const auto a = webhook_signing_key(padded);
  const auto b = webhook_signing_key(unpadded);
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK(a->size() == 32);
  CHECK(*a == *b);
  CHECK(base64_decode("aGk") == std::string("hi"));
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
