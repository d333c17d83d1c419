// The operator console served at / by the admin server: one page over the JSON API
// behind the admin token (console_api.cpp), inline so it needs no network or build step.
#pragma once
#include <string>

namespace pgrelay {

const std::string& console_page_html();

}  // namespace pgrelay
