// `pgrelay emit`: write one event through pgrelay.emit(), from the shell.
#include <cstring>
#include <iostream>
#include <iterator>
#include <vector>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include "cli/common.hpp"
#include "store/admin_queries.hpp"

namespace pgrelay::cli {
namespace {

constexpr size_t kMaxKeyChars = 1000;  // the db_events_key_length constraint

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// Whether a string or key anywhere in `root` holds U+0000, which jsonb refuses.
// Walks with an explicit stack, as deep as the iterative parser allows.
bool holds_nul(const rapidjson::Value& root) {
  std::vector<const rapidjson::Value*> todo{&root};
  auto nul_in = [](const rapidjson::Value& v) { return std::memchr(v.GetString(), 0, v.GetStringLength()) != nullptr; };
  while (!todo.empty()) {
    const rapidjson::Value* v = todo.back();
    todo.pop_back();
    if (v->IsString() && nul_in(*v)) return true;
    if (v->IsArray()) {
      for (const auto& e : v->GetArray()) todo.push_back(&e);
    } else if (v->IsObject()) {
      for (const auto& m : v->GetObject()) {
        if (nul_in(m.name)) return true;
        todo.push_back(&m.value);
      }
    }
  }
  return false;
}

void require_object(const std::string& text, const char* what) {
  rapidjson::Document d;
  // Iterative: deep nesting cannot overflow the stack. Encoding: jsonb takes UTF-8 only.
  d.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag>(text.c_str(), text.size());
  if (d.HasParseError()) {
    throw UsageError(std::string(what) + " is not valid JSON at offset " + std::to_string(d.GetErrorOffset()) + ": " +
                     rapidjson::GetParseError_En(d.GetParseError()));
  }
  if (!d.IsObject()) throw UsageError(std::string(what) + " must be a JSON object");
  if (holds_nul(d)) throw UsageError(std::string(what) + " holds \\u0000, which PostgreSQL's jsonb cannot store");
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
  cmd->add_option("--headers", a->headers,
                  "Headers, a JSON object; \"traceparent\" and \"tracestate\" in it are the event's W3C trace context")
      ->capture_default_str();
  cmd->callback([&g, &action, a] {
    action = [&g, a] {
      // Everything the table would refuse is refused here, before a connection
      // is opened, so no id is spent and the message names the argument.
      require_text(a->type, "type");
      if (const std::string problem = event_type_problem(a->type); !problem.empty())
        throw UsageError("type " + problem);
      require_text(a->key, "--key");
      if (utf8_length(a->key) > kMaxKeyChars) {
        throw UsageError("--key is longer than " + std::to_string(kMaxKeyChars) + " characters");
      }
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
