// A validated relay configuration: the JSON document config/README.md
// describes (the same file `pgrelay -c` reads), plus the environment overrides
// it lists (DATABASE_URL, PGRELAY_*). Invalid input never makes a Config: the
// factories throw ConfigError naming the key path and the problem.
// Copyable; a Config is a value and not shared with the relays made from it.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "pgrelay/export.hpp"

namespace pgrelay::api {

// what() reads like `config: routes[2].handler "hook" is not defined (known: stdout)`.
class PGRELAY_API ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  ~ConfigError() override;
};

// Looks up an environment variable; nullopt when unset.
using Environment = std::function<std::optional<std::string>(const std::string& name)>;

class PGRELAY_API Config {
 public:
  // The process environment (getenv).
  static Environment process_environment();
  // No variables at all: the document alone decides.
  static Environment no_environment();

  // Parses and validates `json_text` (comments and trailing commas allowed),
  // then applies the overrides found in `env`.
  static Config parse(const std::string& json_text, const Environment& env = process_environment());
  // parse() of a file's contents; errors name the path.
  static Config load(const std::string& path, const Environment& env = process_environment());
  // Every key at its default (no handlers, no routes), overrides from `env`.
  static Config defaults(const Environment& env = process_environment());

  Config(const Config& other);
  Config& operator=(const Config& other);
  Config(Config&& other) noexcept;
  Config& operator=(Config&& other) noexcept;
  ~Config();

  // database.url: a libpq connection string or URL; empty means libpq's PG*
  // environment defaults.
  const std::string& database_url() const;
  Config& set_database_url(std::string url);

 private:
  friend struct ConfigAccess;  // the library's side, which reads the model
  struct Impl;
  explicit Config(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pgrelay::api
