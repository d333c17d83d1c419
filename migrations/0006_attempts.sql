-- pgrelay 0006: the attempt log. One row per delivery attempt of an event to a handler, written
-- by the relay in the statement that records the outcomes (pgrelay.record_attempts(), triggers/
-- 50_attempts.sql), so "what did the endpoint answer to event 123 on each attempt, and how long
-- did it take" has an answer after the event itself is gone. Insert-only at the new end, deleted
-- in batches at the old end (pgrelay.trim_attempts()): the space freed is reused, nothing
-- rewrites the table and no lock the acks need is ever taken. No foreign key to db_events: the
-- attempts of a finished (deleted) event are what its receipt is read from. No primary key
-- either: every delivery writes a row here, and a sequence and a second btree cost about a
-- third of the insert (measured); rows are found by event and swept by age.
CREATE TABLE pgrelay.attempts (
  event_id      bigint           NOT NULL,
  handler       text             NOT NULL,
  attempt       integer          NOT NULL,
  relay_id      text             NOT NULL,
  started_at    timestamptz      NOT NULL,
  duration_ms   double precision NOT NULL,
  outcome       text             NOT NULL,
  http_status   smallint,
  exit_code     integer,
  error         text,
  response_head text,
  CONSTRAINT attempts_outcome_valid CHECK (outcome IN ('ok', 'retry', 'dead'))
) WITH (
  -- Deleted from the old end in batches: vacuum early so the space is reused, not grown.
  autovacuum_vacuum_scale_factor = 0.0,
  autovacuum_vacuum_threshold = 10000,
  autovacuum_vacuum_insert_scale_factor = 0.0,
  autovacuum_vacuum_insert_threshold = 50000,
  autovacuum_vacuum_cost_delay = 0
);

COMMENT ON TABLE pgrelay.attempts IS
  'pgrelay attempt log: one row per delivery attempt, kept for attempts.retention_s (config).';
COMMENT ON COLUMN pgrelay.attempts.response_head IS
  'First attempts.response_head_bytes of the response body (webhook) or output (command).';

-- Without a key, a publication FOR ALL TABLES (WAL capture, logical replicas) could not
-- replicate the retention's deletes otherwise.
ALTER TABLE pgrelay.attempts REPLICA IDENTITY FULL;

-- One event's attempts, in order (receipts, `pgrelay events show`, the console).
CREATE INDEX attempts_event ON pgrelay.attempts (event_id, started_at);
-- Retention: rows arrive in time order, so a block range summary finds the old ones and
-- costs next to nothing to keep up to date.
CREATE INDEX attempts_started ON pgrelay.attempts USING brin (started_at);
