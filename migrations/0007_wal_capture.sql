-- pgrelay 0007: capture from the WAL (capture mode "wal"; triggers/25_wal_capture.sql).
-- Producers write nothing into db_events: tracked tables are published to a logical
-- slot read with pgoutput, emit() writes a transactional logical message, and the
-- decoding relay inserts the events itself. Which slot it reads and how far its events
-- are in db_events live here, in one row per slot, updated in the same transaction as
-- the events it wrote: the slot's own confirmed position is advanced only after that
-- commit, so after a crash the slot sends again what this row already covers and the
-- relay skips it (nothing lost, nothing written twice).
CREATE TABLE pgrelay.wal_capture (
  slot_name        text PRIMARY KEY,
  -- the end of the last transaction whose events are in db_events; a transaction
  -- whose commit record lies before it is skipped when the slot sends it again
  materialized_lsn pg_lsn NOT NULL DEFAULT '0/0',
  materialized_at  timestamptz,
  -- events written from this slot, for status and /metrics
  events           bigint NOT NULL DEFAULT 0,
  created_at       timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE pgrelay.wal_capture IS
  'capture "wal": the logical slot the decoding relay reads and the end LSN of the last transaction it wrote into db_events.';

INSERT INTO pgrelay.settings VALUES ('capture', 'trigger') ON CONFLICT (name) DO NOTHING;
