// Log line formatting (JSON lines or text) and the process-wide log settings.
#include "core/log.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace pgrelay::log {
namespace {

Level g_level = Level::info;
bool g_json = true;
std::mutex g_mutex;

const char* level_name(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "info";
}

std::string timestamp() {
  const auto now = std::chrono::system_clock::now();
  const auto t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

}  // namespace

Field::Field(std::string_view n, double v)
    : name(n), value(std::isfinite(v) ? std::to_string(v) : "null"), quoted(false) {}

void configure(Level level, Format format) {
  g_level = level;
  g_json = format == Format::json || (format == Format::automatic && !isatty(STDERR_FILENO));
}

bool enabled(Level level) { return level >= g_level; }

bool parse_level(std::string_view s, Level* out) {
  for (Level l : {Level::debug, Level::info, Level::warn, Level::error}) {
    if (s == level_name(l)) {
      *out = l;
      return true;
    }
  }
  return false;
}

bool parse_format(std::string_view s, Format* out) {
  if (s == "auto") *out = Format::automatic;
  else if (s == "json") *out = Format::json;
  else if (s == "text") *out = Format::text;
  else return false;
  return true;
}

int64_t Throttle::admit() {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mutex_);
  if (now < next_) {
    ++silenced_;
    return 0;
  }
  next_ = now + interval_;
  const int64_t n = silenced_ + 1;
  silenced_ = 0;
  return n;
}

void append_json_escaped(std::string& out, std::string_view s) {
  static const char* hex = "0123456789abcdef";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
}

std::string json_quoted(std::string_view s) {
  std::string out = "\"";
  append_json_escaped(out, s);
  return out + "\"";
}

std::string fixed3(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

void write(Level level, std::string_view message, std::initializer_list<Field> fields) {
  if (!enabled(level)) return;
  std::string line;
  line.reserve(128);
  if (g_json) {
    line += "{\"time\":\"" + timestamp() + "\",\"level\":\"" + level_name(level) + "\",\"msg\":\"";
    append_json_escaped(line, message);
    line += '"';
    for (const Field& f : fields) {
      if (f.omitted) continue;
      line += ",\"";
      append_json_escaped(line, f.name);
      line += "\":";
      if (f.quoted) {
        line += '"';
        append_json_escaped(line, f.value);
        line += '"';
      } else {
        line += f.value;
      }
    }
    line += "}\n";
  } else {
    // logfmt-like: a value with spaces, quotes, '=' or control characters is
    // quoted and escaped, so every entry stays on one line.
    line += timestamp() + " " + level_name(level) + " ";
    append_json_escaped(line, message);
    for (const Field& f : fields) {
      if (f.omitted) continue;
      line += ' ';
      line += f.name;
      line += '=';
      const bool plain =
          !f.value.empty() && f.value.find_first_of(" \"=\\") == std::string::npos &&
          std::none_of(f.value.begin(), f.value.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; });
      if (plain) {
        line += f.value;
      } else {
        line += '"';
        append_json_escaped(line, f.value);
        line += '"';
      }
    }
    line += '\n';
  }
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace pgrelay::log
