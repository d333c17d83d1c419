// `pgrelay emit`: write one event through pgrelay.emit(), from the shell.
#include <iostream>
#include <iterator>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include "cli/common.hpp"
#include "store/admin_queries.hpp"

namespace pgrelay::cli {
namespace {

void require_object(const std::string& text, const char* what) {
  rapidjson::Document d;
  d.Parse<rapidjson::kParseIterativeFlag>(text.c_str(), text.size());  // iterative: deep nesting cannot overflow the stack
  if (d.HasParseError()) {
    throw UsageError(std::string(what) + " is not valid JSON at offset " + std::to_string(d.GetErrorOffset()) + ": " +
                     rapidjson::GetParseError_En(d.GetParseError()));
  }
  if (!d.IsObject()) throw UsageError(std::string(what) + " must be a JSON object");
}

}  // namespace

void add_emit(CLI::App& app, Globals& g, Action& action) {
  auto* cmd = app.add_subcommand("emit", "Write one event (as pgrelay.emit() does in SQL) and print its id.");
  struct Args {
    std::string type, payload = "{}", key, headers = "{}";
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("type", a->type, "Event type, e.g. orders.created (letters, digits, _ . : -)")->required();
  cmd->add_option("payload", a->payload, "Payload, a JSON object; - reads it from stdin")->capture_default_str();
  cmd->add_option("-k,--key", a->key, "Ordering key: events with one key are delivered in commit order");
  cmd->add_option("--headers", a->headers, "Headers, a JSON object")->capture_default_str();
  cmd->callback([&g, &action, a] {
    action = [&g, a] {
      if (a->payload == "-") a->payload.assign(std::istreambuf_iterator<char>(std::cin), {});
      require_object(a->payload, "payload");
      require_object(a->headers, "--headers");
      Config c = load_config(g);
      auto conn = open_db(c, "emit");
      std::optional<std::string> key;
      if (!a->key.empty()) key = a->key;
      std::cout << emit_event(*conn, a->type, a->payload, key, a->headers) << "\n";
      return kOk;
    };
  });
}

}  // namespace pgrelay::cli
