// pgrelay as a library: run the relay inside your program and handle event
// types with typed C++ functions.
//
//   pgrelay::Config config = pgrelay::parse_config(json_text, pgrelay::process_env());
//   pgrelay::Relay relay(config);
//   pgrelay::on<OrderPaid>(relay, "orders.paid", [](const pgrelay::EventInfo& e, const OrderPaid& p) {
//     charge(p.order_id, /*idempotency key*/ e.id);
//     return pgrelay::Outcome::ok();
//   });
//   relay.run();   // until relay.request_stop()
//
// The function runs on the relay's own thread and must be quick; return
// Outcome::retry(why) to try again later with backoff, Outcome::dead(why) to
// dead-letter. A payload that does not fit the struct is dead-lettered with the
// reason naming the field; it never reaches the function.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <rapidjson/document.h>

#include "core/config.hpp"
#include "core/outcome.hpp"
#include "handlers/handler.hpp"
#include "pgrelay/payload.hpp"
#include "relay/relay.hpp"

namespace pgrelay {

// What a typed handler learns about the event besides its payload.
struct EventInfo {
  int64_t id;                      // stable across retries: the idempotency key
  const std::string& type;
  const std::optional<std::string>& key;
  int attempt;                     // 1 for the first delivery
};

// A Handler that decodes the payload into T (T::read, see payload.hpp) first.
template <typename T>
class TypedHandler : public Handler {
 public:
  using Fn = std::function<Outcome(const EventInfo&, const T&)>;
  TypedHandler(std::string type_name, Fn fn) : type_name_(std::move(type_name)), fn_(std::move(fn)) {}

  void deliver(std::shared_ptr<const Event> e, Done done) override {
    rapidjson::Document doc;
    doc.Parse<rapidjson::kParseIterativeFlag>(e->json.c_str(), e->json.size());
    if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("payload")) {
      done(Outcome::dead("event document is not valid JSON"));
      return;
    }
    const rapidjson::Value& payload = doc["payload"];
    if (!payload.IsObject()) {
      done(Outcome::dead("payload does not fit " + type_name_ + ": not a JSON object"));
      return;
    }
    T value{};
    PayloadReader reader(payload);
    T::read(reader, value);
    if (!reader.ok()) {
      done(Outcome::dead("payload does not fit " + type_name_ + ": " + reader.error()));
      return;
    }
    EventInfo info{e->id, e->type, e->key, e->attempt};
    try {
      done(fn_(info, value));
    } catch (const std::exception& ex) {
      done(Outcome::retry(std::string("handler threw: ") + ex.what()));
    }
  }

 private:
  std::string type_name_;
  Fn fn_;
};

// Registers `fn` for events matching `pattern` (exact type, "prefix.*" or "*")
// under the handler name `name` (default: the pattern).
// REQUIRES: before relay.run().
template <typename T>
void on(Relay& relay, const std::string& pattern, typename TypedHandler<T>::Fn fn, RetryPolicy retry = {},
        int64_t timeout_ms = 30000, std::string name = "") {
  if (name.empty()) name = "typed:" + pattern;
  relay.add_handler(name, std::make_unique<TypedHandler<T>>(pattern, std::move(fn)), retry, timeout_ms);
  relay.add_route(pattern, {name});
}

}  // namespace pgrelay
