// The fault runs' handler effects (see effects.hpp).
#include "faults/effects.hpp"

#include <fstream>
#include <pqxx/pqxx>
#include <sstream>

namespace pgrelay::faults {

void prepare_ledger(const std::string& url) {
  pqxx::connection c{url};
  pqxx::work tx{c};
  // No unique constraint: a function that ran twice for one event in committed
  // transactions shows as two rows. n orders the rows by insertion.
  tx.exec(R"sql(
CREATE SCHEMA IF NOT EXISTS fault;
CREATE TABLE IF NOT EXISTS fault.ledger (
  n        bigint GENERATED ALWAYS AS IDENTITY,
  event_id bigint  NOT NULL,
  seq      bigint,
  attempt  integer,
  txid     xid8    NOT NULL DEFAULT pg_current_xact_id(),
  backend  integer NOT NULL DEFAULT pg_backend_pid(),
  at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE OR REPLACE FUNCTION fault.record(ev jsonb) RETURNS void LANGUAGE sql AS $$
  INSERT INTO fault.ledger (event_id, seq, attempt)
  VALUES ((ev->>'id')::bigint, coalesce(ev->'payload'->>'seq', ev->'payload'->'new'->>'seq')::bigint,
          (ev->>'attempt')::integer)
$$;
)sql");
  tx.commit();
}

std::vector<std::string> flaky_command(const std::string& log_path, const std::string& relay) {
  // One short append per run (atomic with O_APPEND); the event on stdin is not needed.
  return {"/bin/sh",
          "-c",
          "if [ \"$PGRELAY_ATTEMPT\" -le 1 ] && [ $((PGRELAY_EVENT_ID % 2)) -eq 0 ]; then rc=1; else rc=0; fi; "
          "echo \"$PGRELAY_EVENT_ID $PGRELAY_ATTEMPT $rc $2 $(date +%s%6N)\" >> \"$1\"; exit $rc",
          "flaky",
          log_path,
          relay};
}

std::vector<CommandRun> read_command_runs(const std::string& log_path) {
  std::vector<CommandRun> runs;
  std::ifstream in(log_path);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    CommandRun r;
    if (fields >> r.event_id >> r.attempt >> r.exit_code >> r.relay >> r.ended_us) runs.push_back(r);
  }
  return runs;
}

}  // namespace pgrelay::faults
