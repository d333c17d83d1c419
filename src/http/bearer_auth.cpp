// Constant-time bearer token comparison.
#include "http/bearer_auth.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

namespace pgrelay {

bool bearer_matches(std::string_view authorization, std::string_view expected) {
  constexpr std::string_view kScheme = "Bearer ";
  std::string_view presented;
  bool scheme_ok = false;
  if (authorization.size() >= kScheme.size()) {
    // The scheme is case-insensitive (RFC 7235); the token is not.
    scheme_ok = true;
    for (size_t i = 0; i < kScheme.size(); ++i) {
      const char a = authorization[i], b = kScheme[i];
      if (b == ' ' ? a != b : (a | 0x20) != (b | 0x20)) scheme_ok = false;
    }
    presented = authorization.substr(kScheme.size());
  }
  unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(presented.data()), presented.size(), a);
  SHA256(reinterpret_cast<const unsigned char*>(expected.data()), expected.size(), b);
  const bool same = CRYPTO_memcmp(a, b, sizeof a) == 0;
  return same && scheme_ok && !expected.empty();
}

}  // namespace pgrelay
