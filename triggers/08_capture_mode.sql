-- The capture mode and its slot's name, read by emit() (10_emit.sql) and track()
-- (20_capture.sql) before the rest of capture "wal" (25_wal_capture.sql) is defined.
-- Re-applied by `pgrelay migrate` whenever this file changes (CREATE OR REPLACE only).

-- 'trigger' (the default: capture triggers and emit() write db_events rows) or 'wal'.
CREATE OR REPLACE FUNCTION pgrelay.capture_mode() RETURNS text
LANGUAGE sql STABLE AS $fn$
  SELECT coalesce((SELECT value FROM pgrelay.settings WHERE name = 'capture'), 'trigger')
$fn$;

-- The slot of this database: slot names are cluster-wide, so it names the database.
CREATE OR REPLACE FUNCTION pgrelay.capture_slot_name() RETURNS text
LANGUAGE sql STABLE AS $fn$
  SELECT coalesce((SELECT slot_name FROM pgrelay.wal_capture LIMIT 1),
                  left('pgrelay_' || regexp_replace(lower(current_database()), '[^a-z0-9_]', '_', 'g'), 63))
$fn$;
