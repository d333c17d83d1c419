// The event filter options (see event_filters.hpp).
#include "cli/event_filters.hpp"

#include <cerrno>
#include <cstdlib>

#include "cli/common.hpp"

namespace pgrelay::cli {

DeadFilter FilterArgs::filter() const {
  require_text(type, "--type");
  require_text(key, "--key");
  require_text(error, "--error");
  DeadFilter f;
  f.ids = ids;
  if (!type.empty()) f.type = type;
  if (!key.empty()) f.key = key;
  if (!error.empty()) f.error_contains = error;
  if (older_than_s >= 0) f.older_than_s = older_than_s;
  f.limit = limit;
  return f;
}

const CLI::Validator& event_id_validator() {
  static const CLI::Validator v(
      [](std::string& s) -> std::string {
        errno = 0;
        char* end = nullptr;
        const long long n = std::strtoll(s.c_str(), &end, 10);
        if (s.empty() || *end != '\0' || errno == ERANGE || n < 1)
          return "must be an event id (1 to 9223372036854775807), not " + s;
        return {};
      },
      "ID");
  return v;
}

void add_filters(CLI::App* cmd, FilterArgs& a, const std::string& older_than) {
  cmd->add_option("--id", a.ids, "Event id (repeatable)")->check(event_id_validator());
  cmd->add_option("--type", a.type, "Event type, exact or \"prefix.*\"");
  cmd->add_option("--key", a.key, "Ordering key");
  cmd->add_option("--older-than-s", a.older_than_s, older_than)->check(CLI::NonNegativeNumber);
  cmd->add_option("--error", a.error, "Last error contains this text");
}

}  // namespace pgrelay::cli
