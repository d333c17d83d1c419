// Structured logging: one JSON object per line, or readable text on a terminal.
// Thread-safe; writes to stderr (stdout belongs to the stdout handler).
#pragma once
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

namespace pgrelay::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };
enum class Format { automatic, json, text };

// REQUIRES: called before other threads log (at start-up).
void configure(Level level, Format format);
bool enabled(Level level);
bool parse_level(std::string_view s, Level* out);
bool parse_format(std::string_view s, Format* out);

// A field of a log line; numbers stay numbers in JSON.
struct Field {
  std::string_view name;
  std::string value;
  bool quoted = true;
  Field(std::string_view n, std::string_view v) : name(n), value(v) {}
  Field(std::string_view n, const char* v) : name(n), value(v) {}
  Field(std::string_view n, const std::string& v) : name(n), value(v) {}
  Field(std::string_view n, int64_t v) : name(n), value(std::to_string(v)), quoted(false) {}
  Field(std::string_view n, int v) : name(n), value(std::to_string(v)), quoted(false) {}
  // A NaN or infinity is written as null: JSON has no such numbers.
  Field(std::string_view n, double v);
  // A field left out of the line when `v` is empty (a trace_id most events lack).
  static Field unless_empty(std::string_view n, std::string v) {
    Field f(n, v);
    f.omitted = f.value.empty();
    return f;
  }
  bool omitted = false;
};

void write(Level level, std::string_view message, std::initializer_list<Field> fields = {});
inline void debug(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::debug, m, f); }
inline void info(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::info, m, f); }
inline void warn(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::warn, m, f); }
inline void error(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::error, m, f); }

// Lets one line of a kind through per interval and counts the rest, so a
// flood (a probe sending hundreds of bad requests) costs one line per interval
// that says how many it stands for. Thread-safe.
class Throttle {
 public:
  explicit Throttle(std::chrono::milliseconds interval) : interval_(interval) {}
  // 0: stay silent. Otherwise log now: the occurrences this line stands for
  // (this one and those kept silent since the last line).
  int64_t admit();

 private:
  const std::chrono::milliseconds interval_;
  std::mutex mutex_;
  std::chrono::steady_clock::time_point next_{};
  int64_t silenced_ = 0;
};

// Appends `s` to `out` as the inside of a JSON string (no quotes added).
void append_json_escaped(std::string& out, std::string_view s);
// `s` as a quoted JSON string.
std::string json_quoted(std::string_view s);
// `v` with three decimals ("1.250"), as the JSON documents print seconds and ratios.
std::string fixed3(double v);

}  // namespace pgrelay::log
