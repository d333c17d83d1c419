// libFuzzer target: parsing a webhook's HTTP response the way
// src/handlers/http_client_pool.cpp does: Beast's response_parser with a string
// body, a 64 KiB body limit (a longer body is truncated, not an error) and a
// 64 KiB header limit; the header is read first (async_read_header: not eager),
// then the body (async_read: eager), fed in pieces as a socket would deliver them.
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

namespace http = boost::beast::http;

namespace {

// Feeds `data` in pieces of `piece` bytes until `done` holds or an error; returns
// the error (need_more when the input ran out).
template <typename Done>
boost::beast::error_code feed(http::response_parser<http::string_body>& parser, const uint8_t* data, size_t size,
                              size_t piece, size_t& offset, std::string& pending, Done done) {
  boost::beast::error_code ec;
  while (!done()) {
    if (offset < size) {
      const size_t n = std::min(piece, size - offset);
      pending.append(reinterpret_cast<const char*>(data) + offset, n);
      offset += n;
    } else if (pending.empty()) {
      return http::error::need_more;
    }
    const size_t used = parser.put(boost::asio::buffer(pending), ec);
    pending.erase(0, used);
    if (ec == http::error::need_more) {
      if (offset >= size) return ec;
      ec = {};
      continue;
    }
    if (ec) return ec;
  }
  return ec;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the piece size, so reads split across headers and chunks.
  const size_t piece = 1 + data[0] % 64;
  ++data;
  --size;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024);
  parser.header_limit(64 * 1024);
  size_t offset = 0;
  std::string pending;
  parser.eager(false);
  auto ec = feed(parser, data, size, piece, offset, pending, [&] { return parser.is_header_done(); });
  if (!ec && !parser.is_done()) {
    parser.eager(true);
    ec = feed(parser, data, size, piece, offset, pending, [&] { return parser.is_done(); });
    if (ec == http::error::need_more) {
      ec = {};
      parser.put_eof(ec);
    }
  }
  if (parser.is_header_done()) {
    auto& res = parser.get();
    (void)res.result_int();
    (void)res.keep_alive();
    if (auto it = res.find(http::field::retry_after); it != res.end()) (void)it->value().size();
    if (res.body().size() > 64 * 1024 + 65536) __builtin_trap();  // the limit holds
  }
  return 0;
}
