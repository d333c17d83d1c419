// Parsing one handler's settings (`handlers.<name>`) and the secrets a config
// reads inline or from the environment. Internal to the config parser.
#pragma once
#include <string>

#include "core/config.hpp"
#include "core/config_json.hpp"

namespace pgrelay::config_json {

// A secret given inline (`key`) or by the name of an environment variable
// (`key_env`); empty when neither is set, or when the variable is unset and
// `secrets` is Secrets::optional.
std::string read_secret(const Value& obj, const std::string& path, const char* key, const EnvLookup& env,
                        Secrets secrets);

HandlerConfig parse_handler(const std::string& name, const Value& v, const std::string& path, const EnvLookup& env,
                            Secrets secrets);

// Why `secret` cannot sign Standard Webhooks requests; empty when it can. A
// secret starting with "whsec_" must be base64 of a non-empty key, padded or
// not (both are what the reference libraries decode); any other non-empty
// text is the key itself.
std::string webhook_secret_problem(const std::string& secret);

}  // namespace pgrelay::config_json
