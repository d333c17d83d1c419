// LISTEN on Boost.Asio with libpqxx 6.4: rebuild everything on any break, since
// get_notifs() never reconnects and a lost LISTEN is otherwise silent.
#include "listen/listener.hpp"

#include <unistd.h>

#include <boost/asio/post.hpp>
#include <pqxx/pqxx>
#include <pqxx/notification>

#include "core/log.hpp"
#include "store/connection.hpp"

namespace pgrelay {

namespace {
constexpr auto kProbeTimeout = std::chrono::seconds(3);

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

class Listener::Receiver : public pqxx::notification_receiver {
 public:
  Receiver(pqxx::connection& c, Listener& owner) : pqxx::notification_receiver(c, kChannel), owner_(owner) {}
  void operator()(const std::string& payload, int) override { owner_.on_notification(payload); }

 private:
  Listener& owner_;
};

Listener::Listener(std::string conninfo, Callbacks callbacks)
    : conninfo_(std::move(conninfo)), callbacks_(std::move(callbacks)), retry_timer_(io_), probe_timer_(io_) {}

Listener::~Listener() { stop(); }

void Listener::start() {
  loop_.start([this] { connect(); });
}

void Listener::stop() {
  loop_.stop([this] {
    drop("stopping");
    retry_timer_.cancel();
    probe_timer_.cancel();
  });
}

void Listener::probe() {
  boost::asio::post(io_, [this] {
    if (!conn_ || probe_waiting_) return;
    try {
      probe_waiting_ = ++probe_seq_;
      {
        pqxx::nontransaction tx(*conn_);
        tx.exec_params("SELECT pg_notify($1, $2)", kChannel, "probe:" + std::to_string(probe_waiting_));
      }
      // Our own notification arrives with the query's reply and sits in libpq's
      // queue: the socket will not turn readable for it, so collect it now.
      conn_->get_notifs();
    } catch (const std::exception& e) {
      drop(std::string("probe failed: ") + e.what());
      return;
    }
    if (probe_waiting_ == 0) return;  // the answer came back with the query's reply: proven
    probe_timer_.expires_after(kProbeTimeout);
    probe_timer_.async_wait([this, seq = probe_waiting_](const boost::system::error_code& ec) {
      if (!ec && probe_waiting_ == seq) drop("self-notification did not arrive within 3 s");
    });
  });
}

double Listener::last_notification_age_s() const {
  const int64_t t = last_notification_ns_.load();
  if (t == 0) return -1;
  return static_cast<double>(now_ns() - t) / 1e9;
}

void Listener::connect() {
  try {
    conn_ = pgrelay::connect(conninfo_, "listener");
    receiver_ = std::make_unique<Receiver>(*conn_, *this);
    socket_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, ::dup(conn_->sock()));
  } catch (const std::exception& e) {
    receiver_.reset();
    conn_.reset();
    const auto wait = backoff_.next();
    log::warn("listener: cannot connect, retrying",
              {{"error", e.what()}, {"retry_ms", static_cast<int64_t>(wait.count())}});
    retry_in(wait);
    return;
  }
  arm();
  probe();  // LISTEN failures are swallowed by libpqxx: prove it works.
}

void Listener::arm() {
  if (!socket_) return;
  socket_->async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
    if (ec == boost::asio::error::operation_aborted) return;
    if (ec) {
      drop("socket error: " + ec.message());
      return;
    }
    on_readable();
  });
}

void Listener::on_readable() {
  try {
    conn_->get_notifs();
  } catch (const std::exception& e) {
    drop(std::string("connection lost: ") + e.what());
    return;
  }
  if (!conn_->is_open()) {
    drop("connection closed");
    return;
  }
  arm();
}

void Listener::on_notification(const std::string& payload) {
  last_notification_ns_.store(now_ns());
  if (payload.rfind("probe:", 0) == 0) {
    if (payload == "probe:" + std::to_string(probe_waiting_)) {
      probe_waiting_ = 0;
      probe_timer_.cancel();
      if (!alive_.exchange(true)) {
        backoff_.reset();
        log::info("listener: LISTEN is live", {{"channel", kChannel}});
        if (callbacks_.on_connected) callbacks_.on_connected();
      }
    }
    return;
  }
  if (callbacks_.on_wake) callbacks_.on_wake();
}

void Listener::drop(const std::string& why) {
  const bool was_alive = alive_.exchange(false);
  probe_waiting_ = 0;
  probe_timer_.cancel();
  unwatch(socket_);
  try {
    receiver_.reset();
  } catch (...) {
    // UNLISTEN on a dead connection may throw; the connection is going away anyway.
  }
  conn_.reset();
  if (why == "stopping") return;
  if (was_alive) log::warn("listener: lost LISTEN, reconnecting", {{"reason", why}});
  retry_in(backoff_.next());
}

void Listener::retry_in(std::chrono::milliseconds wait) {
  retry_timer_.expires_after(wait);
  retry_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) connect();
  });
}

}  // namespace pgrelay
