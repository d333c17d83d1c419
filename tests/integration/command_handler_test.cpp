// The command handler: stdin, environment, exit status, and a timeout that
// kills the program's whole process group.
#include <doctest/doctest.h>
#include <signal.h>

#include <unistd.h>

#include <fstream>
#include <future>
#include <sstream>

#include "handlers/command_handler.hpp"
#include "support/child_process.hpp"

using namespace pgrelay;
using namespace pgrelay::test;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

Outcome run_once(CommandHandler& h, const Event& e) {
  std::promise<Outcome> p;
  auto f = p.get_future();
  h.deliver(std::make_shared<const Event>(e), [&](Outcome o) { p.set_value(std::move(o)); });
  return f.get();
}

Event sample(int attempt) {
  Event e;
  e.id = 42;
  e.type = "orders.paid";
  e.key = "order:7";
  e.attempt = attempt;
  e.json = R"({"id":42,"type":"orders.paid","payload":{"n":1}})";
  return e;
}

}  // namespace

TEST_CASE("a command gets the event on stdin and its id, type, key and attempt in the environment") {
  const std::string out = "/tmp/pgrelay-cmd-" + std::to_string(::getpid());
  CommandHandler h(
      {"sh", "-c",
       "cat > " + out + ".in; echo \"$PGRELAY_EVENT_ID $PGRELAY_EVENT_TYPE $PGRELAY_EVENT_KEY $PGRELAY_ATTEMPT\" > " +
           out + ".env"},
      5000, 1);
  CHECK(run_once(h, sample(3)).is_ok());
  CHECK(read_file(out + ".in") == sample(3).json);
  CHECK(read_file(out + ".env") == "42 orders.paid order:7 3\n");
  ::unlink((out + ".in").c_str());
  ::unlink((out + ".env").c_str());
}

TEST_CASE("a failing command is a retry carrying its exit status and the tail of its output") {
  CommandHandler h({"sh", "-c", "cat > /dev/null; echo 'smtp: connection refused' >&2; exit 7"}, 5000, 1);
  const Outcome o = run_once(h, sample(1));
  CHECK(o.kind == Outcome::Kind::retry);
  CHECK(o.reason == "command: exit status 7: smtp: connection refused");
  CommandHandler missing({"/nonexistent/program"}, 5000, 1);
  CHECK(run_once(missing, sample(1)).reason.find("cannot start /nonexistent/program") != std::string::npos);
}

TEST_CASE("a command that outlives its timeout is killed with its whole process group") {
  const std::string pidfile = "/tmp/pgrelay-cmd-grandchild-" + std::to_string(::getpid());
  // The program starts a grandchild that would outlive a plain kill of the shell.
  CommandHandler h({"sh", "-c", "cat > /dev/null; sleep 30 & echo $! > " + pidfile + "; wait"}, 500, 1);
  const auto start = std::chrono::steady_clock::now();
  const Outcome o = run_once(h, sample(1));
  const auto took = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start).count();
  CHECK(o.kind == Outcome::Kind::retry);
  CHECK(o.reason == "command: timed out after 500 ms");
  CHECK(took < 3000);
  const pid_t grandchild = static_cast<pid_t>(std::stol(read_file(pidfile)));
  CHECK(eventually([&] { return ::kill(grandchild, 0) != 0; }, seconds(3)));  // gone too
  ::unlink(pidfile.c_str());
}
