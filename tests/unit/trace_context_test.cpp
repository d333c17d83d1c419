// W3C trace context: which traceparent and tracestate values pass, and reading them
// from an event document.
#include <doctest/doctest.h>

#include "core/trace_context.hpp"

using namespace pgrelay;

namespace {
const std::string kParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
}

TEST_CASE("a traceparent is version-traceid-parentid-flags in lower-case hex, without all-zero ids") {
  CHECK(valid_traceparent(kParent));
  CHECK(valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later-fields"));
  CHECK_FALSE(valid_traceparent(kParent + "-x"));  // version 00 has exactly four fields
  CHECK_FALSE(valid_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  CHECK_FALSE(valid_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
  CHECK_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
  CHECK_FALSE(valid_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
  CHECK_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"));
  CHECK_FALSE(valid_traceparent(""));
  CHECK_FALSE(valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-a\r\nx: y"));
}

TEST_CASE("a tracestate is up to 32 key=value members in printable ASCII, at most 512 characters") {
  CHECK(valid_tracestate("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"));
  CHECK(valid_tracestate(" a=1 ,, tenant@vendor=x y"));
  CHECK_FALSE(valid_tracestate(""));
  CHECK_FALSE(valid_tracestate("Upper=1"));
  CHECK_FALSE(valid_tracestate("a=b=c"));
  CHECK_FALSE(valid_tracestate("a="));
  CHECK_FALSE(valid_tracestate("a=\x01"));
  std::string many;
  for (int i = 0; i < 33; ++i) many += "k" + std::to_string(i) + "=v,";
  CHECK_FALSE(valid_tracestate(many));
  CHECK_FALSE(valid_tracestate("a=" + std::string(511, 'x')));
}

TEST_CASE("the trace context is read from the event document's headers, and only when valid") {
  const std::string doc =
      R"({"id":1,"type":"t","key":null,"payload":{"traceparent":"in the payload"},"headers":{"traceparent":")" +
      kParent + R"(","tracestate":"a=1"},"created_at":"2024-05-01T00:00:00+00:00","attempt":1})";
  const TraceContext tc = trace_context_of(doc);
  CHECK(tc.traceparent == kParent);
  CHECK(tc.tracestate == "a=1");
  CHECK(tc.trace_id() == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(trace_context_of(R"({"id":1,"payload":{"traceparent":"x"},"headers":{}})").empty());
  CHECK(trace_context_of(R"({"id":1,"payload":{},"headers":{"traceparent":"00-bad"}})").empty());
  CHECK(trace_context_of(R"({"id":1,"payload":{},"headers":{"traceparent":")" + kParent + R"(","tracestate":"Bad"}})")
            .tracestate.empty());
  CHECK(TraceContext{}.trace_id().empty());
}
