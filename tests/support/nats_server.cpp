// Starting, pausing and stopping a test nats-server; stream setup and read-back.
#include "support/nats_server.hpp"

#include <cctype>
#include <cstdlib>

#include "support/ports.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace pgrelay::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

std::string find_nats_server() {
  if (const char* env = std::getenv("PGRELAY_NATS_SERVER"); env != nullptr && *env != '\0') {
    if (::access(env, X_OK) == 0) return env;
    throw std::runtime_error(std::string("PGRELAY_NATS_SERVER=") + env + " is not an executable file");
  }
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH")) {
    std::string p = path;
    for (size_t start = 0;;) {
      const size_t colon = p.find(':', start);
      dirs.push_back(p.substr(start, colon == std::string::npos ? std::string::npos : colon - start));
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
  }
  // Debian installs it in /usr/sbin, which a non-root PATH often lacks.
  for (const char* d : {"/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"}) dirs.push_back(d);
  for (const auto& d : dirs) {
    if (d.empty()) continue;
    const std::string candidate = d + "/nats-server";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  throw std::runtime_error(
      "nats-server not found (looked in PATH and /usr/sbin): install the Debian package nats-server "
      "(scripts/test installs it) or set PGRELAY_NATS_SERVER to the binary");
}

std::string nats_error(const std::string& what, natsStatus s, jsErrCode code = static_cast<jsErrCode>(0)) {
  natsStatus last = NATS_OK;
  const char* text = nats_GetLastError(&last);
  std::string msg = what + ": " + ((text != nullptr && *text != '\0') ? text : natsStatus_GetText(s));
  if (code != 0) msg += " (JetStream error " + std::to_string(static_cast<int>(code)) + ")";
  return msg;
}

}  // namespace

NatsServer::NatsServer() : binary_(find_nats_server()), port_(free_port()) {
  char dir[] = "/tmp/pgrelay-nats-XXXXXX";
  if (::mkdtemp(dir) == nullptr) throw std::runtime_error("mkdtemp failed");
  store_dir_ = dir;
  start();
}

NatsServer::~NatsServer() {
  stop();
  std::error_code ec;
  std::filesystem::remove_all(store_dir_, ec);
}

void NatsServer::start() {
  if (child_) throw std::logic_error("NatsServer::start: already running");
  std::vector<std::string> argv = {binary_, "-js", "-a", "127.0.0.1", "-p", std::to_string(port_), "-sd", store_dir_};
  // If the test process dies without running destructors (an abort under a
  // sanitizer, SIGKILL), the kernel kills the server too instead of orphaning it.
  if (::access("/usr/bin/setpriv", X_OK) == 0) argv.insert(argv.begin(), {"/usr/bin/setpriv", "--pdeathsig", "KILL"});
  child_ = std::make_unique<ChildProcess>(std::move(argv));
  const auto until = steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    if (auto code = child_->wait(milliseconds(0))) {
      const std::string err = child_->err();
      child_.reset();
      throw std::runtime_error("nats-server exited with status " + std::to_string(*code) + " at start: " + err);
    }
    if (accepts_connections(port_)) return;
    if (steady_clock::now() >= until) {
      const std::string err = child_->err();
      stop();
      throw std::runtime_error("nats-server did not accept connections on port " + std::to_string(port_) +
                               " within 10 s: " + err);
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
}

void NatsServer::stop() {
  if (!child_) return;
  resume();
  child_->signal(SIGTERM);
  if (!child_->wait(std::chrono::seconds(5))) {
    child_->signal(SIGKILL);
    child_->wait(std::chrono::seconds(5));
  }
  child_.reset();
}

void NatsServer::pause() {
  if (!child_ || paused_) return;
  child_->signal(SIGSTOP);
  paused_ = true;
  // kill() returns before every thread has stopped; a busy server could still
  // answer a request or two. Wait until each thread shows state T.
  const std::string tasks = "/proc/" + std::to_string(child_->pid()) + "/task";
  const auto until = steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    bool all_stopped = true;
    std::error_code ec;
    for (const auto& t : std::filesystem::directory_iterator(tasks, ec)) {
      std::ifstream stat(t.path() / "stat");
      std::string line;
      std::getline(stat, line);
      const auto paren = line.rfind(')');
      if (paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'T') all_stopped = false;
    }
    if (all_stopped || steady_clock::now() >= until) return;
    std::this_thread::sleep_for(milliseconds(5));
  }
}

void NatsServer::resume() {
  if (child_ && paused_) {
    child_->signal(SIGCONT);
    paused_ = false;
  }
}

JetStreamClient::JetStreamClient(const std::string& url) {
  natsOptions* opts = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK) s = natsOptions_SetURL(opts, url.c_str());
  if (s == NATS_OK) s = natsConnection_Connect(&nc_, opts);
  natsOptions_Destroy(opts);
  if (s == NATS_OK) s = natsConnection_JetStream(&js_, nc_, nullptr);
  if (s != NATS_OK) {
    const std::string msg = nats_error("cannot connect to " + url, s);
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
    throw std::runtime_error(msg);
  }
}

JetStreamClient::~JetStreamClient() {
  jsCtx_Destroy(js_);
  natsConnection_Destroy(nc_);
}

void JetStreamClient::add_stream(const std::string& name, const std::vector<std::string>& subjects,
                                 std::chrono::seconds duplicate_window) {
  std::vector<const char*> subjs;
  for (const auto& s : subjects) subjs.push_back(s.c_str());
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = name.c_str();
  cfg.Subjects = subjs.data();
  cfg.SubjectsLen = static_cast<int>(subjs.size());
  cfg.Storage = js_FileStorage;
  cfg.Duplicates = std::chrono::duration_cast<std::chrono::nanoseconds>(duplicate_window).count();
  const auto until = steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    jsStreamInfo* si = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    const natsStatus s = js_AddStream(&si, js_, &cfg, nullptr, &code);
    jsStreamInfo_Destroy(si);
    if (s == NATS_OK) return;
    if (steady_clock::now() >= until) throw std::runtime_error(nats_error("js_AddStream " + name, s, code));
    std::this_thread::sleep_for(milliseconds(100));
  }
}

uint64_t JetStreamClient::message_count(const std::string& stream) {
  jsStreamInfo* si = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  const natsStatus s = js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, &code);
  if (s != NATS_OK) throw std::runtime_error(nats_error("js_GetStreamInfo " + stream, s, code));
  const uint64_t n = si->State.Msgs;
  jsStreamInfo_Destroy(si);
  return n;
}

std::vector<StoredMessage> JetStreamClient::messages(const std::string& stream) {
  jsStreamInfo* si = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, &code);
  if (s != NATS_OK) throw std::runtime_error(nats_error("js_GetStreamInfo " + stream, s, code));
  const uint64_t first = si->State.FirstSeq, last = si->State.LastSeq, count = si->State.Msgs;
  jsStreamInfo_Destroy(si);
  std::vector<StoredMessage> out;
  for (uint64_t seq = first; count > 0 && seq <= last; ++seq) {
    natsMsg* m = nullptr;
    s = js_GetMsg(&m, js_, stream.c_str(), seq, nullptr, &code);
    if (s == NATS_NOT_FOUND) continue;  // deleted
    if (s != NATS_OK) throw std::runtime_error(nats_error("js_GetMsg " + stream + " #" + std::to_string(seq), s, code));
    StoredMessage sm;
    sm.subject = natsMsg_GetSubject(m);
    const char* id = nullptr;
    if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) == NATS_OK && id != nullptr) sm.msg_id = id;
    const char** keys = nullptr;
    int key_count = 0;
    if (natsMsgHeader_Keys(m, &keys, &key_count) == NATS_OK) {
      for (int k = 0; k < key_count; ++k) {
        const char* value = nullptr;
        if (natsMsgHeader_Get(m, keys[k], &value) != NATS_OK || value == nullptr) continue;
        std::string name = keys[k];
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        sm.headers[name] = value;
      }
      free(static_cast<void*>(keys));
    }
    if (natsMsg_GetData(m) != nullptr)
      sm.data.assign(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m)));
    natsMsg_Destroy(m);
    out.push_back(std::move(sm));
  }
  return out;
}

}  // namespace pgrelay::test
