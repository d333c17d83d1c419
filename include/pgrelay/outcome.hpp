// The result of one delivery to one handler. Expected failures are values, not
// exceptions: the relay turns them into retry schedules and dead letters.
#pragma once
#include <chrono>
#include <optional>
#include <string>
#include <utility>

namespace pgrelay::api {

class Outcome {
 public:
  enum class Kind {
    ok,     // delivered; this handler is done with the event
    retry,  // failed; try again after the handler's backoff (or retry_after, if set)
    dead,   // will never succeed (bad payload, gone for good): dead-letter the event now
  };

  static Outcome ok() { return Outcome(Kind::ok, {}, {}); }
  static Outcome retry(std::string why) { return Outcome(Kind::retry, std::move(why), {}); }
  // A retry no sooner than `delay` (still capped by the handler's retry cap).
  static Outcome retry_in(std::chrono::milliseconds delay, std::string why) {
    return Outcome(Kind::retry, std::move(why), delay);
  }
  static Outcome dead(std::string why) { return Outcome(Kind::dead, std::move(why), {}); }

  Kind kind() const { return kind_; }
  bool is_ok() const { return kind_ == Kind::ok; }
  // Why it failed; recorded as the event's last_error. Empty for ok().
  const std::string& reason() const { return reason_; }
  const std::optional<std::chrono::milliseconds>& retry_after() const { return retry_after_; }

 private:
  Outcome(Kind kind, std::string reason, std::optional<std::chrono::milliseconds> retry_after)
      : kind_(kind), reason_(std::move(reason)), retry_after_(retry_after) {}

  Kind kind_;
  std::string reason_;
  std::optional<std::chrono::milliseconds> retry_after_;
};

}  // namespace pgrelay::api
