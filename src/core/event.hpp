// An event as the relay holds it while delivering: identity, routing fields, the
// JSON document handlers receive, and the claim that fences its outcome.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pgrelay {

struct Event {
  int64_t id = 0;
  std::string type;
  std::optional<std::string> key;
  // The whole event as handlers receive it (stdout line, webhook body, command
  // stdin): {"id","type","key","payload","headers","created_at","attempt"}.
  // Built by the database in the claim query, so the relay never re-encodes it.
  std::string json;
  int attempt = 0;                         // 1 for the first delivery
  int64_t claim_token = 0;                 // fences every outcome recorded for this claim
  std::vector<std::string> handlers_done;  // succeeded on an earlier attempt
};

}  // namespace pgrelay
