// Environment overrides of the config file (PGRELAY_LEASE_MS, DATABASE_URL, ...):
// written into the parsed document before validation, so a value from the
// environment is checked by the same rules, and named by the same key path, as
// one from the file. Internal to the config parser (config.cpp); pure functions
// of the document and the lookup.
#pragma once
#include <rapidjson/document.h>

#include <string>
#include <utility>
#include <vector>

#include "core/config.hpp"

namespace pgrelay {

// Sets every overridden key in `doc` (adding its section when missing) and
// appends (key path, variable) to `origin` for each, so that a validation error
// can name the variable. Throws ConfigError for a non-integer value of an
// integer key. A section that is not an object is left for validation to report.
void apply_env_overrides(rapidjson::Document& doc, const EnvLookup& env,
                         std::vector<std::pair<std::string, std::string>>* origin);

}  // namespace pgrelay
