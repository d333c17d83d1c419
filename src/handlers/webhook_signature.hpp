// Standard Webhooks signing (https://www.standardwebhooks.com): the headers a
// receiver uses to check that a delivery came from us and is fresh.
//
//   webhook-id:        the delivery id, "<database prefix>-<event id>"
//                      (core/event_source.hpp); the same on every retry and
//                      replay and unique across databases, so receivers can
//                      drop duplicates
//   webhook-timestamp: unix seconds when this attempt was sent
//   webhook-signature: "v1," + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))
//
// The key: a secret that starts with "whsec_" is base64 of the key (the
// convention of Standard Webhooks libraries, which hand out such secrets), so
// the key is the base64-decoded rest, padded or not; any other secret is used
// as raw bytes. An empty key is refused (the reference libraries refuse it too).
// Pure functions; thread-safe.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pgrelay {

// The HMAC key a configured secret stands for; nullopt when a "whsec_" secret
// is not valid base64 or the key would be empty.
std::optional<std::string> webhook_signing_key(std::string_view secret);

// "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body)).
std::string webhook_signature(std::string_view key, std::string_view id, int64_t timestamp_s, std::string_view body);

// Standard base64: encode pads; decode accepts padded or unpadded input and
// returns nullopt on anything else.
std::string base64_encode(std::string_view bytes);
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace pgrelay
