// Typed handlers: on<T>() registers a function that receives the payload
// already read into a struct T (T::read, see payload.hpp).
//
//   pgrelay::api::on<OrderPaid>(relay, "orders.paid",
//       [](const pgrelay::api::EventInfo& e, const OrderPaid& p) {
//         charge(p.order_id, /*idempotency key*/ e.id);
//         return pgrelay::api::Outcome::ok();
//       });
//
// The function runs on the relay's own thread and must be quick. Return
// Outcome::retry(why) to try again later with backoff, Outcome::dead(why) to
// dead-letter; a thrown exception is a retry. A payload that does not fit T is
// dead-lettered with the reason naming the field; it never reaches the function.
#pragma once
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <rapidjson/document.h>

#include "pgrelay/handler.hpp"
#include "pgrelay/payload.hpp"
#include "pgrelay/relay.hpp"

namespace pgrelay::api {

using ::pgrelay::PayloadReader;

// What a typed handler learns about the event besides its payload.
struct EventInfo {
  int64_t id;  // stable across retries: the idempotency key
  const std::string& type;
  const std::optional<std::string>& key;
  int attempt;  // 1 for the first delivery
  // The producing transaction's W3C trace context (Event::traceparent()); empty without one.
  std::string traceparent;
  std::string tracestate;
};

// A Handler that reads the payload into T first. Header-only, so T's read()
// is compiled into your program, not the library.
template <typename T>
class TypedHandler : public Handler {
 public:
  using Fn = std::function<Outcome(const EventInfo&, const T&)>;
  TypedHandler(std::string type_name, Fn fn) : type_name_(std::move(type_name)), fn_(std::move(fn)) {}

  void deliver(Event e, Done done) override {
    rapidjson::Document doc;
    doc.Parse<rapidjson::kParseIterativeFlag>(e.json().c_str(), e.json().size());
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
    const EventInfo info{e.id(), e.type(), e.key(), e.attempt(), e.traceparent(), e.tracestate()};
    Outcome outcome = Outcome::ok();
    try {
      outcome = fn_(info, value);
    } catch (const std::exception& ex) {
      outcome = Outcome::retry(std::string("handler threw: ") + ex.what());
    }
    done(std::move(outcome));
  }

 private:
  std::string type_name_;
  Fn fn_;
};

// Registers `fn` for events matching `pattern` (exact type, "prefix.*" or "*")
// under the handler name `name` (default: "typed:" + pattern), and routes the
// pattern to it. REQUIRES: before relay.run().
template <typename T>
void on(Relay& relay, const std::string& pattern, typename TypedHandler<T>::Fn fn, const HandlerOptions& options = {},
        std::string name = "") {
  if (name.empty()) name = "typed:" + pattern;
  relay.add_handler(name, std::make_unique<TypedHandler<T>>(pattern, std::move(fn)), options);
  relay.add_route(pattern, {name});
}

}  // namespace pgrelay::api
