// pgrelay as a library: run the relay inside your program and handle event
// types with typed C++ functions. Everything here stands alone: it needs only
// the standard library and RapidJSON, and links with -lpgrelay
// (find_package(pgrelay) -> pgrelay::pgrelay, or pkg-config pgrelay).
//
//   namespace pr = pgrelay::api;
//   pr::Config config = pr::Config::load("/etc/pgrelay/pgrelay.json");
//   pr::Relay relay(config);
//   pr::on<OrderPaid>(relay, "orders.paid", [](const pr::EventInfo& e, const OrderPaid& p) {
//     charge(p.order_id, /*idempotency key*/ e.id);
//     return pr::Outcome::ok();
//   });
//   relay.run();   // until relay.request_stop()
//
// config.hpp: Config, ConfigError     relay.hpp: Relay, Stats, ReconcileReport
// handler.hpp: Handler, HandlerOptions, RetryPolicy     event.hpp: Event
// outcome.hpp: Outcome     typed.hpp: on<T>(), EventInfo     payload.hpp: PayloadReader
#pragma once
#include "pgrelay/config.hpp"
#include "pgrelay/event.hpp"
#include "pgrelay/handler.hpp"
#include "pgrelay/outcome.hpp"
#include "pgrelay/payload.hpp"
#include "pgrelay/relay.hpp"
#include "pgrelay/typed.hpp"
