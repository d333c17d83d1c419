// The result of one delivery to one handler. Expected failures are values,
// not exceptions: the relay turns them into retry schedules and dead letters.
#pragma once
#include <chrono>
#include <optional>
#include <string>

namespace pgrelay {

struct Outcome {
  enum class Kind {
    ok,     // delivered; the handler is done for this event
    retry,  // failed; try again after the backoff (or retry_after, if set)
    dead,   // will never succeed (bad payload, 410, ...): dead-letter the event now
    defer,  // not attempted (circuit open): reschedule without spending an attempt
  };
  Kind kind = Kind::ok;
  std::string reason;
  std::optional<std::chrono::milliseconds> retry_after;

  static Outcome ok() { return {Kind::ok, {}, {}}; }
  static Outcome retry(std::string why) { return {Kind::retry, std::move(why), {}}; }
  static Outcome retry_in(std::chrono::milliseconds d, std::string why) { return {Kind::retry, std::move(why), d}; }
  static Outcome dead(std::string why) { return {Kind::dead, std::move(why), {}}; }
  static Outcome defer(std::chrono::milliseconds d, std::string why) { return {Kind::defer, std::move(why), d}; }
  bool is_ok() const { return kind == Kind::ok; }
};

}  // namespace pgrelay
