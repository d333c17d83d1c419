-- pgrelay 0008: the attempt log stores one row per acked batch and event-id bucket
-- instead of one row per attempt. A row per attempt cost about 2 ms of backend CPU per
-- batch of 256 (a heap tuple and its WAL record, a btree entry and a JSON-to-record
-- conversion per attempt): a third of the database's work per delivered event, which held
-- the drain with the log on to 0.8x of off. A batch is now one JSON document written as
-- the relay sent it (validated, never converted), so its cost hardly depends on its size.
--
-- bucket = event id >> 10: the relay splits a batch by bucket (almost always one), so an
-- event's attempts are in the few rows of its bucket (pgrelay.attempts_of()). The view
-- pgrelay.attempts keeps the one-row-per-attempt shape of 0006 for ad-hoc SQL.
ALTER TABLE pgrelay.attempts RENAME TO attempts_0006;

CREATE TABLE pgrelay.attempt_batches (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  bucket        bigint      NOT NULL,
  relay_id      text        NOT NULL,
  -- the latest start among its attempts: retention deletes a row once this is old
  started_until timestamptz NOT NULL,
  -- [{"e": event id, "h": handler, "a": attempt, "s": started (µs since the epoch),
  --   "d": duration ms, "o": ok|retry|dead, "st": http status, "x": exit code,
  --   "err": error, "r": response head}, ...], every "e" in this bucket
  attempts      json        NOT NULL
) WITH (
  autovacuum_vacuum_scale_factor = 0.0,
  autovacuum_vacuum_threshold = 1000,
  autovacuum_vacuum_insert_scale_factor = 0.0,
  autovacuum_vacuum_insert_threshold = 10000,
  autovacuum_vacuum_cost_delay = 0
);

COMMENT ON TABLE pgrelay.attempt_batches IS
  'pgrelay attempt log: the attempts of one acked batch within one event-id bucket (id >> 10), kept for attempts.retention_s (config). Read through pgrelay.attempts or pgrelay.attempts_of(id).';

CREATE INDEX attempt_batches_bucket ON pgrelay.attempt_batches (bucket);
-- Retention: rows arrive in time order, so block range summaries find the old ones.
CREATE INDEX attempt_batches_started ON pgrelay.attempt_batches USING brin (started_until);

-- lz4 where the server has it: several times faster than the default pglz on a
-- document this repetitive, at a similar ratio.
DO $do$
BEGIN
  ALTER TABLE pgrelay.attempt_batches ALTER COLUMN attempts SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
  NULL;
END
$do$;

-- One row per attempt, as 0006 kept them.
CREATE VIEW pgrelay.attempts AS
SELECT r.e AS event_id, r.h AS handler, r.a AS attempt, b.relay_id,
       to_timestamp(r.s / 1e6) AS started_at, r.d AS duration_ms, r.o AS outcome,
       r.st AS http_status, r.x AS exit_code, r.err AS error, r.r AS response_head
  FROM pgrelay.attempt_batches b,
       json_to_recordset(b.attempts) AS r(e bigint, h text, a integer, s bigint, d double precision, o text,
                                          st smallint, x integer, err text, r text);

COMMENT ON VIEW pgrelay.attempts IS
  'pgrelay attempt log, one row per delivery attempt (reads every batch: for one event use pgrelay.attempts_of(id)).';

-- The rows 0006 kept, one batch per relay and bucket.
INSERT INTO pgrelay.attempt_batches (bucket, relay_id, started_until, attempts)
SELECT o.event_id >> 10, o.relay_id, max(o.started_at),
       json_agg(json_strip_nulls(json_build_object(
         'e', o.event_id, 'h', o.handler, 'a', o.attempt,
         's', (extract(epoch FROM o.started_at) * 1e6)::bigint, 'd', o.duration_ms, 'o', o.outcome,
         'st', o.http_status, 'x', o.exit_code, 'err', o.error, 'r', o.response_head))
         ORDER BY o.event_id, o.started_at)
  FROM pgrelay.attempts_0006 o
 GROUP BY o.event_id >> 10, o.relay_id;

DROP TABLE pgrelay.attempts_0006;
