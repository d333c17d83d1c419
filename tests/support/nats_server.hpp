// A real nats-server with JetStream for tests, started as a child process on a
// free port with a store directory of its own, and a small JetStream client to
// create streams and read back what they hold.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nats/nats.h>

#include "support/child_process.hpp"

namespace pgrelay::test {

class NatsServer {
 public:
  // Starts `nats-server -js` on 127.0.0.1 and waits until it accepts connections.
  // Throws std::runtime_error (failing the test) if the binary is missing
  // (install the Debian package nats-server; PGRELAY_NATS_SERVER names another)
  // or the server does not come up within 10 s.
  NatsServer();
  ~NatsServer();  // stop(), then removes the store directory
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  // SIGTERM, then SIGKILL after 5 s. Streams survive in the store directory.
  void stop();
  // Starts again on the same port and store directory. REQUIRES: stopped.
  void start();
  // SIGSTOP (waiting until every thread has stopped) / SIGCONT: the server
  // keeps its connections but answers nothing.
  void pause();
  void resume();

 private:
  std::string binary_;
  std::string store_dir_;
  uint16_t port_ = 0;
  std::unique_ptr<ChildProcess> child_;
  bool paused_ = false;
};

// One message as a stream holds it.
struct StoredMessage {
  std::string subject;
  std::string msg_id;  // the Nats-Msg-Id header
  std::string data;
  std::map<std::string, std::string> headers;  // every header (its first value), names lower-cased
};

// A JetStream client for setting up and checking streams. Throws
// std::runtime_error on failure, with the server's words.
class JetStreamClient {
 public:
  explicit JetStreamClient(const std::string& url);
  ~JetStreamClient();
  JetStreamClient(const JetStreamClient&) = delete;
  JetStreamClient& operator=(const JetStreamClient&) = delete;

  // Creates a file-backed stream; retries for up to 10 s while JetStream starts.
  void add_stream(const std::string& name, const std::vector<std::string>& subjects,
                  std::chrono::seconds duplicate_window = std::chrono::minutes(5));
  // Messages stored in the stream.
  uint64_t message_count(const std::string& stream);
  // Every message of the stream, in sequence order.
  std::vector<StoredMessage> messages(const std::string& stream);

 private:
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

}  // namespace pgrelay::test
