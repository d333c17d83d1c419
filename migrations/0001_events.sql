-- pgrelay 0001: the outbox table, its claim indexes and the migration ledger's companions.
CREATE SCHEMA IF NOT EXISTS pgrelay;

CREATE TABLE pgrelay.db_events (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_type       text        NOT NULL,
  key              text,
  payload          jsonb       NOT NULL DEFAULT '{}',
  headers          jsonb       NOT NULL DEFAULT '{}',
  created_at       timestamptz NOT NULL DEFAULT now(),
  xid              xid8        NOT NULL DEFAULT pg_current_xact_id(),
  status           text        NOT NULL DEFAULT 'pending',
  attempts         integer     NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  lease_owner      text,
  claim_token      bigint,
  last_error       text,
  handlers_done    text[]      NOT NULL DEFAULT '{}',
  finished_at      timestamptz,
  CONSTRAINT db_events_status_valid CHECK (status IN ('pending', 'processing', 'done', 'dead')),
  CONSTRAINT db_events_type_valid CHECK (event_type ~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$'),
  CONSTRAINT db_events_key_length CHECK (key IS NULL OR length(key) BETWEEN 1 AND 1000),
  CONSTRAINT db_events_payload_object CHECK (jsonb_typeof(payload) = 'object'),
  CONSTRAINT db_events_headers_object CHECK (jsonb_typeof(headers) = 'object')
) WITH (
  -- A queue table is updated and deleted constantly: vacuum it early and often,
  -- and leave room on each page for HOT updates of the state columns.
  fillfactor = 85,
  autovacuum_vacuum_scale_factor = 0.0,
  autovacuum_vacuum_threshold = 5000,
  autovacuum_vacuum_insert_scale_factor = 0.0,
  autovacuum_vacuum_insert_threshold = 20000,
  autovacuum_analyze_scale_factor = 0.02,
  autovacuum_vacuum_cost_delay = 0
);

COMMENT ON TABLE pgrelay.db_events IS 'pgrelay outbox: one row per event; the table is the truth, NOTIFY only wakes the relay.';
COMMENT ON COLUMN pgrelay.db_events.next_attempt_at IS
  'When the row is next claimable: for pending rows the due time, for processing rows the lease expiry.';
COMMENT ON COLUMN pgrelay.db_events.claim_token IS
  'Fresh for every claim; an outcome is recorded only where it still matches (fencing).';
COMMENT ON COLUMN pgrelay.db_events.handlers_done IS
  'Handlers that already succeeded for this event; a retry re-runs only the others.';
COMMENT ON COLUMN pgrelay.db_events.xid IS
  'Producing transaction id, for readers that need a commit-order-safe watermark.';

-- The claim query: unfinished rows in due order. Processing rows sit here too,
-- keyed by their lease expiry, so an expired lease is claimable without a sweep.
CREATE INDEX db_events_due ON pgrelay.db_events (next_attempt_at, id)
  WHERE status IN ('pending', 'processing');

-- Per-key head lookup: is there an older unfinished event of the same key?
CREATE INDEX db_events_key_head ON pgrelay.db_events (key, id)
  WHERE key IS NOT NULL AND status IN ('pending', 'processing');

-- Dead letters and retention scans.
CREATE INDEX db_events_dead ON pgrelay.db_events (id) WHERE status = 'dead';
CREATE INDEX db_events_finished ON pgrelay.db_events (finished_at) WHERE status = 'done';

CREATE SEQUENCE pgrelay.claim_token_seq AS bigint CACHE 100;

-- Tables whose changes are captured by pgrelay.track().
CREATE TABLE pgrelay.tracked_tables (
  table_name      regclass PRIMARY KEY,
  event_prefix    text     NOT NULL,
  key_columns     text[]   NOT NULL,
  include_columns text[],
  exclude_columns text[],
  operations      text[]   NOT NULL,
  tracked_at      timestamptz NOT NULL DEFAULT now()
);

-- Settings the SQL functions follow (the wake mode; see pgrelay.set_wake).
CREATE TABLE pgrelay.settings (
  name  text PRIMARY KEY,
  value text NOT NULL
);
INSERT INTO pgrelay.settings VALUES ('wake', 'notify');

-- Relays report here every few seconds, so `pgrelay status` and operators see
-- which relays run and whether their LISTEN connection is alive.
CREATE TABLE pgrelay.relays (
  id                   text PRIMARY KEY,
  started_at           timestamptz NOT NULL DEFAULT now(),
  seen_at              timestamptz NOT NULL DEFAULT now(),
  wake                 text NOT NULL,
  listen_alive         boolean NOT NULL DEFAULT false,
  last_notification_at timestamptz,
  in_flight            integer NOT NULL DEFAULT 0,
  delivered            bigint NOT NULL DEFAULT 0
);
