// `pgrelay track` / `untrack`: install or remove capture triggers on a table.
#include <iostream>

#include "cli/common.hpp"
#include "store/admin_queries.hpp"

namespace pgrelay::cli {

void add_track(CLI::App& app, Globals& g, Action& action) {
  auto* track =
      app.add_subcommand("track",
                         "Capture a table's changes as events: an AFTER trigger writes '<table>.insert|update|delete'\n"
                         "with payload {op, schema, table, new, old, changed}; updates that change no captured column\n"
                         "emit nothing. The key defaults to the primary key, so one row's events stay in order;\n"
                         "a table without one needs --key (columns to order by) or --no-key (no order at all).");
  struct Args {
    std::string table, key_columns, include, exclude, operations = "insert,update,delete", prefix;
    bool no_key = false;
  };
  auto a = std::make_shared<Args>();
  track->add_option("table", a->table, "Table, optionally schema-qualified (e.g. public.orders)")->required();
  track->add_option("--key,--key-columns", a->key_columns,
                    "Comma-separated columns forming the ordering key (default: the primary key)");
  track->add_flag("--no-key", a->no_key, "No ordering key: this table's events flow fully in parallel");
  track->add_option("--include", a->include, "Comma-separated columns to capture (default: all)");
  track->add_option("--exclude", a->exclude, "Comma-separated columns never to capture (e.g. secrets)");
  track->add_option("--operations", a->operations, "Comma-separated subset of insert,update,delete")
      ->capture_default_str();
  track->add_option("--prefix", a->prefix, "Event type prefix (default: the table name)");
  track->callback([&g, &action, a] {
    action = [&g, a] {
      TrackOptions o;
      if (a->no_key && !a->key_columns.empty()) throw UsageError("--no-key and --key exclude each other");
      for (const auto& [value, option] : {std::pair{&a->table, "table"},
                                          {&a->key_columns, "--key"},
                                          {&a->include, "--include"},
                                          {&a->exclude, "--exclude"},
                                          {&a->operations, "--operations"},
                                          {&a->prefix, "--prefix"}}) {
        require_text(*value, option);
      }
      if (a->no_key) o.key_columns = std::vector<std::string>{};
      else if (!a->key_columns.empty()) o.key_columns = split_csv(a->key_columns);
      if (!a->include.empty()) o.include_columns = split_csv(a->include);
      o.exclude_columns = split_csv(a->exclude);
      o.operations = split_csv(a->operations);
      if (!a->prefix.empty()) o.event_prefix = a->prefix;
      Config c = load_config(g);
      auto conn = open_db(c, "track");
      if (!o.key_columns && !has_primary_key(*conn, a->table)) {
        // Without a key every row's events would flow in parallel, out of order: say so, do not guess.
        throw UsageError(a->table +
                         " has no primary key, so its events would have no ordering key: name the columns "
                         "that identify a row with --key id,... (events of one row then stay in order), or pass "
                         "--no-key to deliver them without any order");
      }
      track_table(*conn, a->table, o);
      std::cout << "track: capturing " << a->table << "\n";
      return kOk;
    };
  });

  auto* untrack = app.add_subcommand("untrack", "Remove a table's capture trigger; events already written stay.");
  auto table = std::make_shared<std::string>();
  untrack->add_option("table", *table, "Table, optionally schema-qualified")->required();
  untrack->callback([&g, &action, table] {
    action = [&g, table] {
      require_text(*table, "table");
      Config c = load_config(g);
      auto conn = open_db(c, "track");
      const bool was = untrack_table(*conn, *table);
      std::cout << "untrack: " << *table << (was ? " no longer captured" : " was not tracked") << "\n";
      return kOk;
    };
  });
}

}  // namespace pgrelay::cli
