// Retry-After: delta-seconds or one of the three HTTP-date forms.
#include "handlers/retry_after.hpp"

#include <time.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <string>
#include <vector>

namespace pgrelay {
namespace {

constexpr int64_t kMaxSeconds = 365LL * 24 * 3600;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

int64_t digits_value(std::string_view s) {  // REQUIRES: all_digits(s); saturates
  int64_t v = 0;
  for (char c : s) {
    v = v * 10 + (c - '0');
    if (v > kMaxSeconds * 1000) return kMaxSeconds * 1000;
  }
  return v;
}

int month_index(std::string_view s) {
  static const std::array<const char*, 12> names = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (int i = 0; i < 12; ++i) {
    if (s == names[static_cast<size_t>(i)]) return i;
  }
  return -1;
}

bool is_weekday(std::string_view s) {
  static const std::array<const char*, 7> short_names = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
  static const std::array<const char*, 7> long_names = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                                        "Friday", "Saturday", "Sunday"};
  for (size_t i = 0; i < 7; ++i) {
    if (s == short_names[i] || s == long_names[i]) return true;
  }
  return false;
}

// Accepts "Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT" and
// "Sun Nov  6 08:49:37 1994": a weekday, a month name, a day, a year and a time,
// in the orders those forms use. Any other token makes the value invalid.
std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view s) {
  std::vector<std::string_view> tokens;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == ' ' || s[i] == ',' || s[i] == '-') {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != ',' && s[j] != '-') ++j;
    tokens.push_back(s.substr(i, j - i));
    i = j;
  }
  int month = -1, hour = -1, minute = -1, second = -1;
  std::vector<std::string_view> numbers;
  bool weekday = false, gmt = false;
  for (auto t : tokens) {
    if (!weekday && is_weekday(t)) {
      weekday = true;
    } else if (month < 0 && month_index(t) >= 0) {
      month = month_index(t);
    } else if (!gmt && t == "GMT") {
      gmt = true;
    } else if (hour < 0 && t.size() == 8 && t[2] == ':' && t[5] == ':' && all_digits(t.substr(0, 2)) &&
               all_digits(t.substr(3, 2)) && all_digits(t.substr(6, 2))) {
      hour = static_cast<int>(digits_value(t.substr(0, 2)));
      minute = static_cast<int>(digits_value(t.substr(3, 2)));
      second = static_cast<int>(digits_value(t.substr(6, 2)));
    } else if (all_digits(t) && t.size() <= 4 && numbers.size() < 2) {
      numbers.push_back(t);
    } else {
      return std::nullopt;
    }
  }
  if (!weekday || month < 0 || hour < 0 || numbers.size() != 2) return std::nullopt;
  if (numbers[0].size() > 2 || (numbers[1].size() != 2 && numbers[1].size() != 4)) return std::nullopt;
  const int day = static_cast<int>(digits_value(numbers[0]));
  int year = static_cast<int>(digits_value(numbers[1]));
  if (numbers[1].size() == 2) year += year < 70 ? 2000 : 1900;  // RFC 850's two-digit years
  if (day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return std::nullopt;
  struct tm tm {};
  tm.tm_year = year - 1900;
  tm.tm_mon = month;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const time_t t = ::timegm(&tm);
  if (t == static_cast<time_t>(-1)) return std::nullopt;
  // system_clock counts nanoseconds in 64 bits (years ~1678-2262): converting a
  // date outside that overflows. Before 1970 is simply "in the past"; after 2200
  // is clamped to a year by the caller anyway.
  constexpr time_t kFarFuture = 7258118400;  // 2200-01-01T00:00:00Z
  return std::chrono::system_clock::from_time_t(std::clamp<time_t>(t, 0, kFarFuture));
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value,
                                                           std::chrono::system_clock::time_point now) {
  value = trim(value);
  if (all_digits(value)) {
    const int64_t seconds = std::min(digits_value(value), kMaxSeconds);
    return std::chrono::milliseconds(seconds * 1000);
  }
  const auto at = parse_http_date(value);
  if (!at) return std::nullopt;
  const auto delta = std::chrono::duration_cast<std::chrono::milliseconds>(*at - now);
  if (delta.count() <= 0) return std::chrono::milliseconds(0);
  return std::min(delta, std::chrono::milliseconds(kMaxSeconds * 1000));
}

}  // namespace pgrelay
