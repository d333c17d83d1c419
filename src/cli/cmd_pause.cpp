// `pgrelay pause TYPE` / `pgrelay resume TYPE`: stop and restart claiming an
// event type, or every type below a prefix ("user.*").
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "cli/common.hpp"
#include "store/ops_queries.hpp"

namespace pgrelay::cli {
namespace {

constexpr int kKnownTypesListed = 50;

// Whether the config routes `type` by name or by a prefix pattern, or declares
// it. A "*" route says nothing about which types exist, so it does not count.
bool config_names(const Config& c, const std::string& type) {
  for (const auto& r : c.routes) {
    if (r.match != "*" && pause_covers(r.match, type)) return true;
  }
  for (const auto& d : c.event_types) {
    if (d.type == type) return true;
  }
  return false;
}

// A paused type that nothing knows is almost always a typo, and pausing it
// would hold back nothing while the operator believes the real type stopped.
void refuse_unknown(pqxx::connection& conn, const Config& c, const std::string& type) {
  if (config_names(c, type) || event_type_stored(conn, type)) return;
  std::vector<std::string> known = stored_event_types(conn, kKnownTypesListed);
  for (const auto& r : c.routes) {
    if (r.match != "*") known.push_back(r.match);
  }
  for (const auto& d : c.event_types) known.push_back(d.type);
  std::sort(known.begin(), known.end());
  known.erase(std::unique(known.begin(), known.end()), known.end());
  std::string list;
  for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
  throw UsageError("\"" + type + "\" is not a known event type: no stored event has it and no route or declared type" +
                   (c.routes.empty() ? " (no config given: -c adds its routes)" : "") + " names it (known: " +
                   (list.empty() ? "none" : list) + "); check the spelling, or pass --force to pause it anyway");
}

// $USER@hostname, or whichever of them is known; "" (the database role) if neither.
std::string operator_name() {
  const char* user = std::getenv("USER");
  char host[256] = {};
  const bool has_host = gethostname(host, sizeof host - 1) == 0 && host[0] != '\0';
  std::string who = user ? user : "";
  if (has_host) who += (who.empty() ? "" : "@") + std::string(host);
  return who;
}

}  // namespace

void add_pause(CLI::App& app, Globals& g, Action& action) {
  auto type = std::make_shared<std::string>();
  auto reason = std::make_shared<std::string>();
  auto force = std::make_shared<bool>(false);
  auto by = std::make_shared<std::string>(operator_name());
  auto* pause =
      app.add_subcommand("pause",
                         "Stop claiming events of one type, or of every type below a prefix (\"user.*\"), on\n"
                         "every relay. Their events keep accumulating as pending (see pgrelay status) until\n"
                         "`pgrelay resume` with the same text. Events in flight finish normally. A paused\n"
                         "event still holds back later events of its key. An exact type that no stored event\n"
                         "has and the config (-c) neither routes nor declares is refused as a likely typo.");
  pause->add_option("type", *type, "Event type, exact, or \"prefix.*\" for every type below prefix.")->required();
  pause->add_option("--reason", *reason, "Why (shown in pgrelay status and the status page)");
  pause->add_option("--by", *by, "Who is pausing it (shown beside the reason); default user@host")
      ->capture_default_str();
  pause->add_flag("--force", *force, "Pause an exact type even though no event or route knows it yet");
  pause->callback([&g, &action, type, reason, force, by] {
    action = [&g, type, reason, force, by] {
      require_text(*type, "type");
      require_text(*reason, "--reason");
      require_text(*by, "--by");
      if (const std::string problem = pause_pattern_problem(*type); !problem.empty()) throw UsageError(problem);
      Config c = load_config(g);
      auto conn = open_db(c, "pause");
      const bool pattern = PausedType{*type, "", ""}.pattern();
      if (!pattern && !*force) refuse_unknown(*conn, c, *type);
      const bool fresh = pause_type(*conn, *type, *reason, *by);
      std::cout << "paused " << *type
                << (pattern ? " (every type below " + type->substr(0, type->size() - 1) + ")" : "")
                << (fresh ? "" : " (it was already paused)") << "\n";
      return kOk;
    };
  });

  auto rtype = std::make_shared<std::string>();
  auto* resume = app.add_subcommand(
      "resume", "Claim events of a paused type (or \"prefix.*\", as it was paused) again; wakes the relays at once.");
  resume->add_option("type", *rtype, "Event type or \"prefix.*\", exactly as paused")->required();
  resume->callback([&g, &action, rtype] {
    action = [&g, rtype] {
      require_text(*rtype, "type");
      Config c = load_config(g);
      auto conn = open_db(c, "resume");
      const bool was = resume_type(*conn, *rtype);
      std::string covering;
      for (const auto& p : list_paused(*conn)) {
        if (p.pattern() && pause_covers(p.event_type, *rtype))
          covering += (covering.empty() ? "" : ", ") + p.event_type;
      }
      if (!covering.empty()) {
        throw UsageError((was ? "resumed " + *rtype + ", but it" : *rtype) + " is still paused by " + covering +
                         ": resume that (and pause what should stay paused)");
      }
      std::cout << "resumed " << *rtype << (was ? "" : " (it was not paused)") << "\n";
      return kOk;
    };
  });
}

}  // namespace pgrelay::cli
