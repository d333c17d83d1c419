// libFuzzer target: the config parser (pgrelay::parse_config) with arbitrary
// documents and a fixed environment. Anything it rejects must be a ConfigError
// (or another std::exception), never a crash, a hang or undefined behaviour.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "core/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const pgrelay::EnvLookup env = [](const std::string& name) -> std::optional<std::string> {
    if (name == "HOOK_SECRET") return std::string("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    if (name == "PGRELAY_BATCH_SIZE") return std::nullopt;
    return std::nullopt;
  };
  try {
    pgrelay::Config c = pgrelay::parse_config(text, env);
    (void)c.handler("hook");
  } catch (const std::exception&) {
  }
  return 0;
}
