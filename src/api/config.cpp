// Config: the public face of core/config's parse_config(), with its errors as
// the public ConfigError.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "api/access.hpp"

namespace pgrelay::api {

ConfigError::~ConfigError() = default;  // the key function: one typeinfo, exported, so callers can catch it

Environment Config::process_environment() { return pgrelay::process_env(); }

Environment Config::no_environment() {
  return [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
}

namespace {

// An empty Environment (a default-constructed std::function) means none.
pgrelay::EnvLookup lookup(const Environment& env) { return env ? pgrelay::EnvLookup(env) : Config::no_environment(); }

}  // namespace

Config Config::parse(const std::string& json_text, const Environment& env) {
  try {
    return Config(std::make_unique<Impl>(Impl{pgrelay::parse_config(json_text, lookup(env))}));
  } catch (const pgrelay::ConfigError& e) {
    throw ConfigError(e.what());
  }
}

Config Config::load(const std::string& path, const Environment& env) {
  std::ifstream in(path);
  if (!in) throw ConfigError("config: cannot read " + path + ": " + std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  try {
    return parse(text.str(), env);
  } catch (const ConfigError& e) {
    throw ConfigError(std::string(e.what()) + " (in " + path + ")");
  }
}

Config Config::defaults(const Environment& env) {
  try {
    return Config(std::make_unique<Impl>(Impl{pgrelay::default_config(lookup(env))}));
  } catch (const pgrelay::ConfigError& e) {
    throw ConfigError(e.what());  // an override such as PGRELAY_BATCH_SIZE=x
  }
}

Config::Config(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Config::Config(const Config& other) : impl_(std::make_unique<Impl>(*other.impl_)) {}
Config& Config::operator=(const Config& other) {
  if (this != &other) impl_ = std::make_unique<Impl>(*other.impl_);
  return *this;
}
Config::Config(Config&& other) noexcept = default;
Config& Config::operator=(Config&& other) noexcept = default;
Config::~Config() = default;

const std::string& Config::database_url() const { return impl_->model.database.url; }

Config& Config::set_database_url(std::string url) {
  impl_->model.database.url = std::move(url);
  return *this;
}

}  // namespace pgrelay::api
