// The `attempts` section of the config: the attempt log's switch, head size and retention.
#include <doctest/doctest.h>

#include "core/config.hpp"

using namespace pgrelay;

namespace {

EnvLookup no_env() {
  return [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
}

std::string error_of(const std::string& json) {
  try {
    parse_config(json, no_env());
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("the attempt log is on by default with a 256 byte head and a week of retention") {
  const Config c = parse_config("{}", no_env());
  CHECK(c.attempts.enabled);
  CHECK(c.attempts.response_head_bytes == 256);
  CHECK(c.attempts.retention_s == 7 * 86400);
}

TEST_CASE("the attempts section sets the switch and the limits and rejects what it cannot take") {
  const Config c =
      parse_config(R"({"attempts": {"enabled": false, "response_head_bytes": 0, "retention_s": 3600}})", no_env());
  CHECK_FALSE(c.attempts.enabled);
  CHECK(c.attempts.response_head_bytes == 0);
  CHECK(c.attempts.retention_s == 3600);
  CHECK(error_of(R"({"attempts": {"enabled": "yes"}})") ==
        "config: attempts.enabled must be true or false, not a string");
  CHECK(error_of(R"({"attempts": {"response_head_bytes": 5000}})")
            .find("attempts.response_head_bytes must be between 0 "
                  "and 4096") != std::string::npos);
  CHECK(error_of(R"({"attempts": {"retention_s": 1}})").find("attempts.retention_s") != std::string::npos);
  CHECK(error_of(R"({"attempts": {"keep": 1}})").find("attempts.keep is not a known key") != std::string::npos);
}
