// text_head(): what the attempt log keeps of a response body or a command's output.
#include <doctest/doctest.h>

#include "core/text_head.hpp"

using pgrelay::text_head;

TEST_CASE("a text head keeps at most the limit and never cuts a character") {
  CHECK(text_head("hello world", 5) == "hello");
  CHECK(text_head("hello", 0).empty());
  // "é" is two bytes: a limit that falls inside it stops before it.
  CHECK(text_head("caf\xC3\xA9!", 4) == "caf");
  CHECK(text_head("caf\xC3\xA9!", 5) == "caf\xC3\xA9");
  CHECK(text_head("line one\nline two\ttab", 100) == "line one\nline two\ttab");
}

TEST_CASE("a text head replaces bytes PostgreSQL would refuse") {
  const std::string nul("a\0b", 3);
  CHECK(text_head(nul, 10) == "a b");
  CHECK(text_head("\xFF\xFE"
                  "ok",
                  10) == "??ok");
  CHECK(text_head("\xC0\x80", 10) == "??");            // overlong NUL
  CHECK(text_head("\xED\xA0\x80", 10) == "???");       // a UTF-16 surrogate
  CHECK(text_head("\xF4\x90\x80\x80", 10) == "????");  // above U+10FFFF
  CHECK(text_head("\xE2\x82", 10) == "??");            // cut short
  CHECK(text_head("\xF0\x9F\x98\x80", 10) == "\xF0\x9F\x98\x80");
}
