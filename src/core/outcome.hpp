// The result of one delivery to one handler. Expected failures are values,
// not exceptions: the relay turns them into retry schedules and dead letters.
#pragma once
#include <chrono>
#include <cstddef>
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
  // What the destination answered, for the attempt log (config `attempts`); all optional.
  int http_status = 0;                // webhook: the response's status, 0 when none came
  std::optional<int> exit_code = {};  // command: its exit status (128 + the signal when killed)
  std::string response_head = {};     // the first bytes of the response body or the command's output,
                                      // at most kMaxResponseHead (the relay cuts it to its own limit)

  static constexpr size_t kMaxResponseHead = 4096;

  static Outcome ok() { return {Kind::ok, {}, {}}; }
  static Outcome retry(std::string why) { return {Kind::retry, std::move(why), {}}; }
  static Outcome retry_in(std::chrono::milliseconds d, std::string why) { return {Kind::retry, std::move(why), d}; }
  static Outcome dead(std::string why) { return {Kind::dead, std::move(why), {}}; }
  static Outcome defer(std::chrono::milliseconds d, std::string why) { return {Kind::defer, std::move(why), d}; }
  bool is_ok() const { return kind == Kind::ok; }

  // Keeps the first kMaxResponseHead bytes of `head` as the response head.
  Outcome& with_response(int status, std::string head) {
    http_status = status;
    if (head.size() > kMaxResponseHead) head.resize(kMaxResponseHead);
    response_head = std::move(head);
    return *this;
  }
  Outcome& with_exit(int code, std::string head) {
    exit_code = code;
    if (head.size() > kMaxResponseHead) head.resize(kMaxResponseHead);
    response_head = std::move(head);
    return *this;
  }
};

}  // namespace pgrelay
