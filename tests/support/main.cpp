// doctest's main for both test binaries; ignores SIGPIPE as the daemon does.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <signal.h>

#include <cstdlib>

#include "core/log.hpp"

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  // Relay logs would drown the test output; PGRELAY_TEST_LOG=debug|info|warn shows them.
  pgrelay::log::Level level = pgrelay::log::Level::error;
  if (const char* l = std::getenv("PGRELAY_TEST_LOG")) pgrelay::log::parse_level(l, &level);
  pgrelay::log::configure(level, pgrelay::log::Format::text);
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
