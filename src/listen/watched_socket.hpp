// How a wake source lets go of the libpq socket it watches: it watches a dup of
// the connection's descriptor (so Asio never closes libpq's own), and before the
// connection goes, cancels what waits on it and closes the dup.
#pragma once
#include <memory>

#include <boost/asio/posix/stream_descriptor.hpp>

namespace pgrelay {

using WatchedSocket = std::unique_ptr<boost::asio::posix::stream_descriptor>;

// Cancels the waits on `socket` (their handlers see operation_aborted) and closes
// it; nothing if it is already gone.
inline void unwatch(WatchedSocket& socket) {
  if (!socket) return;
  boost::system::error_code ignored;
  socket->cancel(ignored);
  socket->close(ignored);  // closes our dup, never libpq's own socket
  socket.reset();
}

}  // namespace pgrelay
