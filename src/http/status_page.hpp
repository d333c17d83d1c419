// The status page served at "/": one self-contained HTML document (no external
// assets) that fetches /status.json every second and renders backlog,
// throughput, dead letters, paused types, handlers and their breakers.
#pragma once
#include <string>

namespace pgrelay {

const std::string& status_page_html();

}  // namespace pgrelay
