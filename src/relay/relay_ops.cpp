// The relay's operational duties: the admin server it starts, the retention
// sweep it runs from its loop, and the per-handler metrics it records.
#include <pqxx/except>

#include "core/log.hpp"
#include "http/admin_server.hpp"
#include "listen/listener.hpp"
#include "relay/relay.hpp"
#include "store/ops_queries.hpp"

namespace pgrelay {
namespace {

using Clock = std::chrono::steady_clock;

// Retention deletes at most this many rows per statement (a short lock, a
// small WAL burst) and stops after a time budget so claims are not held up.
constexpr int kRetentionBatch = 5000;
constexpr auto kRetentionBudget = std::chrono::milliseconds(200);
constexpr auto kRetentionEvery = std::chrono::seconds(5);
constexpr auto kRetentionSoon = std::chrono::milliseconds(500);  // when the last sweep ran out of budget

}  // namespace

void Relay::start_admin() {
  if (config_.admin.listen.empty() || admin_) return;
  AdminServerOptions o;
  o.listen = config_.admin.listen;
  o.token = config_.admin.token;
  o.database_url = config_.database.url;
  o.ready_max_backlog = config_.admin.ready_max_backlog;
  o.ready_max_oldest_pending_s = config_.admin.ready_max_oldest_pending_s;
  o.allowed_hosts = config_.admin.allowed_hosts;
  o.expect_listener = config_.relay.wake != "poll";
  for (const auto& [name, slot] : slots_) o.handlers.push_back(name);
  RelayProbe probe;
  probe.relay_id = id_;
  probe.wake = config_.relay.wake;
  if (config_.relay.wake != "poll") {  // notify: the LISTEN connection; wal: the replication slot
    probe.listener_alive = [this] { return listening(); };
    probe.last_notification_age_s = [this] { return last_wake_age_s(); };
  }
  probe.event_totals = [this] {
    return std::array<int64_t, 4>{stats_.delivered.load(), stats_.retried.load(), stats_.dead.load(),
                                  stats_.released.load()};
  };
  admin_ = std::make_unique<AdminServer>(std::move(o), &metrics_, std::move(probe));
  admin_->start();
  admin_port_ = admin_->port();
}

void Relay::stop_admin() {
  if (!admin_) return;
  admin_->stop();
  admin_.reset();
  admin_port_ = 0;
}

void Relay::sweep_retention() {
  const int64_t retention_s = config_.relay.done_retention_s;
  if (retention_s <= 0 && !config_.attempts.enabled) {
    next_retention_at_ = Clock::time_point::max();
    return;
  }
  bool more = false;
  // Only one relay sweeps at a time (an advisory lock inside each batch's
  // transaction); a busy lock means another relay is on it.
  const int64_t deleted =
      retention_s > 0 ? delete_in_batches(
                            [&](int limit) { return delete_finished(queue_->connection(), retention_s, limit); }, &more)
                      : 0;
  if (deleted > 0) {
    metrics_.record_retention(deleted);
    log::debug("retention: deleted finished events", {{"count", deleted}, {"retention_s", retention_s}});
  }
  if (trim_attempts()) more = true;
  next_retention_at_ = Clock::now() + (more ? std::chrono::duration_cast<Clock::duration>(kRetentionSoon)
                                            : std::chrono::duration_cast<Clock::duration>(kRetentionEvery));
}

int64_t Relay::delete_in_batches(const std::function<int64_t(int limit)>& batch, bool* more) {
  const auto start = Clock::now();
  int64_t deleted = 0, n = 0;
  while ((n = batch(kRetentionBatch)) > 0) {
    deleted += n;
    if (n < kRetentionBatch) break;
    if (Clock::now() - start >= kRetentionBudget) {
      *more = true;
      break;
    }
  }
  return deleted;
}

void Relay::note_delivery(const InFlight& f, const Pending& p) {
  Metrics::Result r = Metrics::Result::delivered;
  switch (p.outcome.kind) {
    case Outcome::Kind::ok: r = Metrics::Result::delivered; break;
    case Outcome::Kind::dead: r = Metrics::Result::dead; break;
    case Outcome::Kind::retry:
      r = f.event->attempt >= p.slot->retry.max_attempts ? Metrics::Result::dead : Metrics::Result::retried;
      break;
    case Outcome::Kind::defer: r = Metrics::Result::deferred; break;
  }
  metrics_.record_delivery(f.event->type, p.slot->name, r,
                           std::chrono::duration<double>(Clock::now() - f.claimed_at).count());
}

}  // namespace pgrelay
