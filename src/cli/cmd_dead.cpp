// `pgrelay dead list|retry|purge`: inspect and act on dead letters.
#include <cerrno>
#include <cstdlib>
#include <iostream>

#include "cli/common.hpp"
#include "core/log.hpp"
#include "store/admin_queries.hpp"

namespace pgrelay::cli {
namespace {

struct FilterArgs {
  std::vector<int64_t> ids;
  std::string type, key, error;
  int64_t older_than_s = -1;
  int limit = 100;
  bool all = false, yes = false, json = false;

  // A filter that PostgreSQL text cannot hold would be cut short and match more.
  DeadFilter filter() const {
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
  bool narrowed() const { return !ids.empty() || !type.empty() || !key.empty() || !error.empty() || older_than_s >= 0; }
};

void add_filters(CLI::App* cmd, FilterArgs& a) {
  // Checked as text: CLI11 would turn 99999999999999999999 into INT64_MAX silently.
  const CLI::Validator event_id(
      [](std::string& s) -> std::string {
        errno = 0;
        char* end = nullptr;
        const long long v = std::strtoll(s.c_str(), &end, 10);
        if (s.empty() || *end != '\0' || errno == ERANGE || v < 1)
          return "must be an event id (1 to 9223372036854775807), not " + s;
        return {};
      },
      "ID");
  cmd->add_option("--id", a.ids, "Event id (repeatable)")->check(event_id);
  cmd->add_option("--type", a.type, "Event type, exact or \"prefix.*\"");
  cmd->add_option("--key", a.key, "Ordering key");
  cmd->add_option("--older-than-s", a.older_than_s, "Dead for at least this many seconds")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--error", a.error, "Last error contains this text");
}

}  // namespace

void add_dead(CLI::App& app, Globals& g, Action& action) {
  auto* dead = app.add_subcommand(
      "dead", "Dead letters: events that will not be retried on their own. Never deleted by retention.");
  dead->require_subcommand(1);
  auto a = std::make_shared<FilterArgs>();

  auto* list = dead->add_subcommand("list", "List dead events, oldest first");
  add_filters(list, *a);
  list->add_option("--limit", a->limit, "At most this many")->check(CLI::Range(1, 100000))->capture_default_str();
  list->add_flag("--json", a->json, "One JSON object per line, with the payload");
  list->callback([&g, &action, a] {
    action = [&g, a] {
      const DeadFilter f = a->filter();
      Config c = load_config(g);
      auto conn = open_db(c, "dead");
      const std::vector<DeadEvent> dead = list_dead(*conn, f);
      if (dead.empty()) {
        // On stderr with --json, so a consumer of the JSON lines reads none.
        (a->json ? std::cerr : std::cout)
            << "dead list: no dead events" << (a->narrowed() ? " match the filter" : "") << "\n";
      }
      for (const DeadEvent& d : dead) {
        if (a->json) {
          std::cout << "{\"id\":" << d.id << ",\"type\":" << log::json_quoted(d.type)
                    << ",\"key\":" << (d.key ? log::json_quoted(*d.key) : "null") << ",\"attempts\":" << d.attempts
                    << ",\"last_error\":" << log::json_quoted(d.last_error)
                    << ",\"created_at\":" << log::json_quoted(d.created_at)
                    << ",\"finished_at\":" << log::json_quoted(d.finished_at) << ",\"payload\":" << d.payload << "}\n";
        } else {
          std::cout << d.id << "  " << d.type << "  key=" << d.key.value_or("-") << "  attempts=" << d.attempts
                    << "  dead since " << d.finished_at << "\n    " << d.last_error << "\n";
        }
      }
      return kOk;
    };
  });

  auto* retry = dead->add_subcommand("retry", "Make dead events pending again with attempts reset");
  add_filters(retry, *a);
  retry->add_flag("--all", a->all, "Retry every dead event (required when no filter is given)");
  retry->callback([&g, &action, a] {
    action = [&g, a] {
      if (!a->narrowed() && !a->all)
        throw UsageError("name events with --id/--type/--key/--older-than-s/--error, or pass --all");
      const DeadFilter f = a->filter();
      Config c = load_config(g);
      auto conn = open_db(c, "dead");
      std::cout << "dead retry: " << retry_dead(*conn, f) << " events pending again\n";
      return kOk;
    };
  });

  auto* purge = dead->add_subcommand("purge", "Delete dead events for good");
  add_filters(purge, *a);
  purge->add_flag("--all", a->all, "Purge every dead event (required when no filter is given)");
  purge->add_flag("--yes", a->yes, "Really delete (without it, only count what would go)");
  purge->callback([&g, &action, a] {
    action = [&g, a] {
      if (!a->narrowed() && !a->all)
        throw UsageError("name events with --id/--type/--key/--older-than-s/--error, or pass --all");
      DeadFilter f = a->filter();
      Config c = load_config(g);
      auto conn = open_db(c, "dead");
      if (!a->yes) {
        f.limit = 1000000;
        std::cout << "dead purge: would delete " << list_dead(*conn, f).size() << " events; add --yes to delete\n";
        return kUsage;
      }
      std::cout << "dead purge: deleted " << purge_dead(*conn, f) << " events\n";
      return kOk;
    };
  });
}

}  // namespace pgrelay::cli
