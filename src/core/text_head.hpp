// The first bytes of text from outside (a response body, a command's output) made safe to
// store and show: valid UTF-8 that PostgreSQL's text and jsonb accept, cut at a character.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace pgrelay {

// At most `max_bytes` bytes of `s`, never cutting a character: bytes that are not valid
// UTF-8 become '?', NUL and other control characters (but tab, newline and carriage
// return) become ' '. Returns "" when max_bytes is 0.
std::string text_head(std::string_view s, size_t max_bytes);

}  // namespace pgrelay
