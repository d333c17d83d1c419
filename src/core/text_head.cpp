// text_head(): UTF-8 validated by the rules PostgreSQL applies (no overlong forms, no
// surrogates, nothing above U+10FFFF), so a stored head never fails the statement it is in.
#include "core/text_head.hpp"

#include <algorithm>

namespace pgrelay {
namespace {

// The length of the valid UTF-8 sequence at s[i], or 0 if there is none.
size_t sequence_length(std::string_view s, size_t i) {
  const auto at = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = at(0);
  if (c < 0x80) return 1;
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  if (at(1) < lo || at(1) > hi) return 0;
  for (size_t k = 2; k < len; ++k) {
    if ((at(k) & 0xC0) != 0x80) return 0;
  }
  return len;
}

}  // namespace

std::string text_head(std::string_view s, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(s.size(), max_bytes));
  for (size_t i = 0; i < s.size();) {
    const size_t len = sequence_length(s, i);
    if (out.size() + (len == 0 ? 1 : len) > max_bytes) break;
    const auto c = static_cast<unsigned char>(s[i]);
    if (len == 0) {
      out += '?';
      i += 1;
    } else if (len == 1 && (c < 0x20 || c == 0x7F) && c != '\t' && c != '\n' && c != '\r') {
      out += ' ';
      i += 1;
    } else {
      out.append(s, i, len);
      i += len;
    }
  }
  return out;
}

}  // namespace pgrelay
