// `pgrelay pause TYPE` / `pgrelay resume TYPE`: stop and restart claiming one event type.
#include <iostream>

#include "cli/common.hpp"
#include "store/ops_queries.hpp"

namespace pgrelay::cli {

void add_pause(CLI::App& app, Globals& g, Action& action) {
  auto type = std::make_shared<std::string>();
  auto reason = std::make_shared<std::string>();
  auto* pause = app.add_subcommand(
      "pause",
      "Stop claiming events of one type (exact name) on every relay. Its events keep\n"
      "accumulating as pending (see pgrelay status) until `pgrelay resume TYPE`. Events in\n"
      "flight finish normally. A paused event still holds back later events of its key.");
  pause->add_option("type", *type, "Event type, exact name")->required();
  pause->add_option("--reason", *reason, "Why (shown in pgrelay status and the status page)");
  pause->callback([&g, &action, type, reason] {
    action = [&g, type, reason] {
      Config c = load_config(g);
      auto conn = open_db(c, "pause");
      const bool fresh = pause_type(*conn, *type, *reason);
      std::cout << "paused " << *type << (fresh ? "" : " (it was already paused)") << "\n";
      return kOk;
    };
  });

  auto rtype = std::make_shared<std::string>();
  auto* resume = app.add_subcommand("resume", "Claim events of a paused type again; wakes the relays at once.");
  resume->add_option("type", *rtype, "Event type, exact name")->required();
  resume->callback([&g, &action, rtype] {
    action = [&g, rtype] {
      Config c = load_config(g);
      auto conn = open_db(c, "resume");
      const bool was = resume_type(*conn, *rtype);
      std::cout << "resumed " << *rtype << (was ? "" : " (it was not paused)") << "\n";
      return kOk;
    };
  });
}

}  // namespace pgrelay::cli
