// `pgrelay dead list|retry|purge`: inspect and act on dead letters.
#include <iostream>

#include "cli/common.hpp"
#include "cli/event_filters.hpp"
#include "core/log.hpp"
#include "store/admin_queries.hpp"

namespace pgrelay::cli {

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
