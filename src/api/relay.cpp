// The public Relay: a facade over the internal pgrelay::Relay (relay/relay.hpp)
// that adapts public handlers and outcomes to the internal ones.
#include "pgrelay/relay.hpp"

#include <atomic>
#include <set>
#include <stdexcept>

#include "api/access.hpp"
#include "core/log.hpp"
#include "relay/relay.hpp"

namespace pgrelay::api {

Handler::~Handler() = default;  // the key function: Handler's vtable and typeinfo live in the library

// The public defaults document the internal ones; keep them equal.
static_assert(RetryPolicy{}.max_attempts == pgrelay::RetryPolicy{}.max_attempts);
static_assert(RetryPolicy{}.base_ms == pgrelay::RetryPolicy{}.base_ms);
static_assert(RetryPolicy{}.cap_ms == pgrelay::RetryPolicy{}.cap_ms);
static_assert(RetryPolicy{}.jitter == pgrelay::RetryPolicy{}.jitter);

namespace {

pgrelay::Outcome to_internal(Outcome o) {
  switch (o.kind()) {
    case Outcome::Kind::ok: return pgrelay::Outcome::ok();
    case Outcome::Kind::retry:
      if (o.retry_after()) return pgrelay::Outcome::retry_in(*o.retry_after(), o.reason());
      return pgrelay::Outcome::retry(o.reason());
    case Outcome::Kind::dead: return pgrelay::Outcome::dead(o.reason());
  }
  return pgrelay::Outcome::retry("handler returned an unknown outcome");
}

// Runs a public handler where the relay expects an internal one.
class HandlerAdapter : public pgrelay::Handler {
 public:
  explicit HandlerAdapter(std::unique_ptr<api::Handler> impl) : impl_(std::move(impl)) {}

  void deliver(std::shared_ptr<const pgrelay::Event> event, Done done) override {
    // The relay must hear exactly one outcome, also when deliver() throws after
    // handing `done` to another thread.
    auto reported = std::make_shared<std::atomic<bool>>(false);
    auto once = [reported, done](pgrelay::Outcome o) {
      if (!reported->exchange(true)) done(std::move(o));
    };
    try {
      impl_->deliver(EventAccess::wrap(std::move(event)), [once](Outcome o) { once(to_internal(std::move(o))); });
    } catch (const std::exception& e) {
      once(pgrelay::Outcome::retry(std::string("handler threw: ") + e.what()));
    } catch (...) {
      once(pgrelay::Outcome::retry("handler threw a non-standard exception"));
    }
  }

  void shutdown() override { impl_->shutdown(); }

 private:
  std::unique_ptr<api::Handler> impl_;
};

void check(const std::string& name, const HandlerOptions& o) {
  auto bad = [&](const std::string& what) {
    throw std::invalid_argument("add_handler: handler \"" + name + "\": " + what);
  };
  if (name.empty()) bad("the name is empty");
  if (o.retry.max_attempts < 1) bad("retry.max_attempts must be at least 1");
  if (o.retry.base_ms <= 0) bad("retry.base_ms must be positive");
  if (o.retry.cap_ms < o.retry.base_ms) bad("retry.cap_ms must be at least retry.base_ms");
  if (!(o.retry.jitter >= 0 && o.retry.jitter <= 1)) bad("retry.jitter must be within 0..1");
  if (o.timeout_ms <= 0) bad("timeout_ms must be positive");
}

}  // namespace

struct Relay::Impl {
  explicit Impl(const pgrelay::Config& c) : relay(c) {
    for (const auto& h : c.handlers) names.insert(h.name);
  }
  pgrelay::Relay relay;
  std::set<std::string> names;  // handlers defined so far: the config's and add_handler's
};

Relay::Relay(const Config& config) {
  const pgrelay::Config& model = ConfigAccess::model(config);
  // The config's log keys apply to the process's log (stderr), as in `pgrelay run`.
  log::Level level = log::Level::info;
  log::Format format = log::Format::automatic;
  log::parse_level(model.log.level, &level);
  log::parse_format(model.log.format, &format);
  log::configure(level, format);
  impl_ = std::make_unique<Impl>(model);
}

Relay::~Relay() = default;

void Relay::add_handler(const std::string& name, std::unique_ptr<Handler> handler, const HandlerOptions& options) {
  check(name, options);
  if (!handler) throw std::invalid_argument("add_handler: handler \"" + name + "\" is null");
  if (!impl_->names.insert(name).second) {
    throw std::invalid_argument("add_handler: a handler named \"" + name + "\" is already defined");
  }
  const pgrelay::RetryPolicy retry{options.retry.max_attempts, options.retry.base_ms, options.retry.cap_ms,
                                   options.retry.jitter};
  impl_->relay.add_handler(name, std::make_unique<HandlerAdapter>(std::move(handler)), retry, options.timeout_ms);
}

void Relay::add_route(const std::string& match, std::vector<std::string> handlers) {
  impl_->relay.add_route(match, std::move(handlers));
}

void Relay::run() { impl_->relay.run(); }

ReconcileReport Relay::reconcile(std::chrono::milliseconds max_duration, const std::function<void(int64_t)>& progress) {
  const pgrelay::ReconcileReport r = impl_->relay.reconcile(max_duration, progress);
  return ReconcileReport{r.delivered, r.retried, r.dead, r.lease_expiries, r.timed_out};
}

void Relay::request_stop() { impl_->relay.request_stop(); }

Stats Relay::stats() const {
  const pgrelay::RelayStats& s = impl_->relay.stats();
  Stats out;
  out.claimed = s.claimed.load();
  out.delivered = s.delivered.load();
  out.retried = s.retried.load();
  out.dead = s.dead.load();
  out.released = s.released.load();
  out.fenced = s.fenced.load();
  out.lease_expiries = s.lease_expiries.load();
  out.timeouts = s.timeouts.load();
  out.claim_batches = s.claim_batches.load();
  return out;
}

}  // namespace pgrelay::api
