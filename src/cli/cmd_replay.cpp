// `pgrelay replay`: deliver finished events again (same id, fresh attempts).
#include <iostream>

#include "cli/common.hpp"
#include "core/log.hpp"
#include "store/ops_queries.hpp"

namespace pgrelay::cli {
namespace {

// "100/s", "100" or "2.5/s" -> events per second.
double parse_rate(const std::string& s) {
  std::string n = s;
  if (n.size() > 2 && n.compare(n.size() - 2, 2, "/s") == 0) n.resize(n.size() - 2);
  char* end = nullptr;
  const double v = std::strtod(n.c_str(), &end);
  if (n.empty() || *end != '\0' || !(v > 0))
    throw UsageError("--rate must look like 100/s (events per second), got \"" + s + "\"");
  return v;
}

}  // namespace

void add_replay(CLI::App& app, Globals& g, Action& action) {
  struct Args {
    std::string type, key, since, until, rate;
    int64_t from_id = -1, to_id = -1;
    bool dry_run = false, all = false, json = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("replay",
                                 "Deliver finished (done) events again: each becomes pending with a fresh attempt\n"
                                 "count and no handler marked done, keeping its id, so receivers that drop duplicates\n"
                                 "by id will drop these too. Only events kept by relay.done_retention_s > 0 exist to\n"
                                 "be replayed; dead events are retried with `pgrelay dead retry` instead.\n\n"
                                 "--dry-run lists exactly the events a real replay takes (the same query).\n\n"
                                 "Id ranges and commit order: ids are handed out at insert but become visible at\n"
                                 "commit, so a lower id can commit after a higher one. A range takes the finished\n"
                                 "events it can see; an event inside it whose transaction has not committed yet is\n"
                                 "not taken, and needs no replay: it gets its first delivery when it commits.");
  cmd->add_option("--type", a->type, "Event type, exact or \"prefix.*\"");
  cmd->add_option("--key", a->key, "Ordering key");
  cmd->add_option("--since", a->since, "Created at or after this time (e.g. 2024-05-01T00:00:00Z)");
  cmd->add_option("--until", a->until, "Created before this time");
  cmd->add_option("--from-id", a->from_id, "Lowest id (inclusive)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--to-id", a->to_id, "Highest id (inclusive)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--rate", a->rate,
                  "Spread the replay at this many events per second, e.g. 100/s (default: all at once)");
  cmd->add_flag("--dry-run", a->dry_run, "List what would be replayed; change nothing");
  cmd->add_flag("--all", a->all, "Replay every finished event (required when no filter is given)");
  cmd->add_flag("--json", a->json, "With --dry-run: one JSON object per line");
  cmd->callback([&g, &action, a] {
    action = [&g, a]() -> int {
      for (const auto& [value, option] :
           {std::pair{&a->type, "--type"}, {&a->key, "--key"}, {&a->since, "--since"}, {&a->until, "--until"}}) {
        require_text(*value, option);
      }
      ReplayFilter f;
      if (!a->type.empty()) f.type = a->type;
      if (!a->key.empty()) f.key = a->key;
      if (!a->since.empty()) f.since = a->since;
      if (!a->until.empty()) f.until = a->until;
      if (a->from_id >= 0) f.from_id = a->from_id;
      if (a->to_id >= 0) f.to_id = a->to_id;
      if (!a->rate.empty()) f.rate_per_s = parse_rate(a->rate);
      if (!f.narrowed() && !a->all)
        throw UsageError("name events with --type/--key/--since/--until/--from-id/--to-id, or pass --all");
      Config c = load_config(g);
      auto conn = open_db(c, "replay");
      // A dry run that finds nothing did what was asked (exit 0); a replay that
      // replays nothing did not (exit 1). Both say why there may be nothing.
      auto nothing = [&c](int code) -> int {
        std::cerr << "pgrelay replay: no finished events match. Finished events are only kept when "
                     "relay.done_retention_s > 0 (the relays' config; "
                  << (c.relay.done_retention_s > 0
                          ? "this config keeps them for " + std::to_string(c.relay.done_retention_s) + " s"
                          : std::string("this config has 0: they are deleted at once"))
                  << "); dead events are retried with `pgrelay dead retry`.\n";
        return code;
      };
      if (a->dry_run) {
        const auto events = replay_candidates(*conn, f);
        for (const auto& e : events) {
          if (a->json) {
            std::cout << "{\"id\":" << e.id << ",\"type\":" << log::json_quoted(e.type)
                      << ",\"key\":" << (e.key ? log::json_quoted(*e.key) : "null")
                      << ",\"created_at\":" << log::json_quoted(e.created_at)
                      << ",\"finished_at\":" << log::json_quoted(e.finished_at) << "}\n";
          } else {
            std::cout << e.id << "  " << e.type << "  key=" << e.key.value_or("-") << "  created " << e.created_at
                      << "  finished " << e.finished_at << "\n";
          }
        }
        if (events.empty()) {
          if (!a->json) std::cout << "replay --dry-run: 0 events would be replayed\n";
          return nothing(kOk);
        }
        if (!a->json) std::cout << "replay --dry-run: " << events.size() << " events would be replayed\n";
        return kOk;
      }
      const int64_t n = replay(*conn, f);
      if (n == 0) return nothing(kFailure);
      std::cout << "replay: " << n << " events pending again"
                << (f.rate_per_s > 0
                        ? " (due over the next " + std::to_string(static_cast<int64_t>(n / f.rate_per_s)) + " s)"
                        : "")
                << "\n";
      return kOk;
    };
  });
}

}  // namespace pgrelay::cli
