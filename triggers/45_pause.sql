-- Pause and resume (table: migrations 0002 and 0009; the claim sets a paused type's events
-- aside as it meets them, triggers/40_queue.sql). Re-applied by `pgrelay migrate` whenever
-- this file changes.

-- Pauses a type or a 'prefix.*' pattern: its pending events are set aside now, later ones
-- by the claims that meet them. `who` is recorded as who paused it (the CLI sends
-- user@host, the console "console"), else the database role. Returns false if it was
-- paused already (reason and who updated when a reason is given).
DROP FUNCTION IF EXISTS pgrelay.pause(text, text);  -- 0.x: this one without `who`
CREATE OR REPLACE FUNCTION pgrelay.pause(entry text, why text, who text DEFAULT NULL) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
  fresh boolean;
BEGIN
  INSERT INTO pgrelay.paused_types (event_type, reason, paused_by) VALUES (entry, why, coalesce(who, session_user))
  ON CONFLICT (event_type) DO UPDATE
    SET reason = coalesce(EXCLUDED.reason, pgrelay.paused_types.reason),
        paused_by = CASE WHEN EXCLUDED.reason IS NULL THEN pgrelay.paused_types.paused_by ELSE EXCLUDED.paused_by END
  RETURNING xmax = 0 INTO fresh;
  UPDATE pgrelay.db_events e SET status = 'paused'
   WHERE e.status = 'pending' AND e.event_type LIKE pgrelay.type_pattern(entry);
  RETURN fresh;
END
$fn$;

-- Resumes a paused entry: its events that no other pause covers are pending again. The entry
-- is deleted first, so a claim setting events aside under it has finished (it holds a key
-- share lock on it) and its events are seen here. Returns false if it was not paused.
CREATE OR REPLACE FUNCTION pgrelay.resume(entry text) RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
  DELETE FROM pgrelay.paused_types p WHERE p.event_type = entry;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  UPDATE pgrelay.db_events e SET status = 'pending'
   WHERE e.status = 'paused'
     AND NOT EXISTS (SELECT 1 FROM pgrelay.paused_types p WHERE e.event_type LIKE pgrelay.type_pattern(p.event_type));
  PERFORM pgrelay.wake();
  RETURN true;
END
$fn$;
