// The library's side of the public types: how the facade reaches the internal
// model behind a public Config or Event. Never installed.
#pragma once
#include <memory>

#include "core/config.hpp"
#include "core/event.hpp"
#include "pgrelay/config.hpp"
#include "pgrelay/event.hpp"

namespace pgrelay::api {

struct Config::Impl {
  pgrelay::Config model;
};

struct ConfigAccess {
  static const pgrelay::Config& model(const Config& c) { return c.impl_->model; }
};

struct EventAccess {
  // Shares the relay's event; nothing is copied.
  static Event wrap(std::shared_ptr<const pgrelay::Event> e) { return Event(std::static_pointer_cast<const void>(e)); }
  static const pgrelay::Event& of(const Event& e) { return *static_cast<const pgrelay::Event*>(e.impl_.get()); }
};

}  // namespace pgrelay::api
