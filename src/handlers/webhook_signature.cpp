// HMAC-SHA256 and base64 through OpenSSL's libcrypto.
#include "handlers/webhook_signature.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string>

namespace pgrelay {

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::optional<std::string> base64_decode(std::string_view input) {
  // Unpadded input (what some libraries hand out) is padded here: 2 or 3
  // characters of a last group stand for 1 or 2 bytes; 1 stands for none.
  std::string padded(input);
  if (padded.find('=') == std::string::npos) {
    if (padded.size() % 4 == 1) return std::nullopt;
    if (padded.size() % 4 != 0) padded.append(4 - padded.size() % 4, '=');
  }
  const std::string_view text = padded;
  if (text.size() % 4 != 0) return std::nullopt;
  if (text.empty()) return std::string();
  size_t padding = 0;
  if (text.back() == '=') ++padding;
  if (text.size() >= 2 && text[text.size() - 2] == '=') ++padding;
  for (size_t i = 0; i < text.size() - padding; ++i) {
    const char c = text[i];
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
    if (!ok) return std::nullopt;
  }
  std::string out(3 * text.size() / 4, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0 || static_cast<size_t>(n) < padding) return std::nullopt;
  out.resize(static_cast<size_t>(n) - padding);  // EVP_DecodeBlock counts padding as zero bytes
  return out;
}

std::optional<std::string> webhook_signing_key(std::string_view secret) {
  constexpr std::string_view prefix = "whsec_";
  std::optional<std::string> key = std::string(secret);
  if (secret.substr(0, prefix.size()) == prefix) key = base64_decode(secret.substr(prefix.size()));
  if (key && key->empty()) return std::nullopt;  // HMAC with an empty key proves nothing
  return key;
}

std::string webhook_signature(std::string_view key, std::string_view id, int64_t timestamp_s, std::string_view body) {
  std::string message;
  message.reserve(id.size() + body.size() + 24);
  message.append(id).append(".").append(std::to_string(timestamp_s)).append(".").append(body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
       message.size(), mac, &mac_len);
  return "v1," + base64_encode(std::string_view(reinterpret_cast<const char*>(mac), mac_len));
}

}  // namespace pgrelay
