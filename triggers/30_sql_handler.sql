-- pgrelay.call_handler(): runs a `sql` handler's function for a batch of claimed
-- events inside the caller's transaction, which then records the outcomes, so a
-- function's effect commits exactly when its success is recorded (docs/design.md,
-- the contract, point 4). Re-applied by `pgrelay migrate` whenever this file changes.
--
-- events: [{"id": .., "token": .., "event": {...the event document...}}, ...]
-- Returns one row per event: error is NULL on success, the reason otherwise.
-- An event whose claim token no longer matches is skipped with 'lease lost'
-- (another relay owns it now); the others are locked for the transaction.
CREATE OR REPLACE FUNCTION pgrelay.call_handler(fn regproc, events jsonb)
RETURNS TABLE (id bigint, error text)
LANGUAGE plpgsql AS $fn$
DECLARE
  ev jsonb;
BEGIN
  FOR ev IN SELECT e.value FROM jsonb_array_elements(events) AS e LOOP
    id := (ev ->> 'id')::bigint;
    PERFORM 1 FROM pgrelay.db_events d
     WHERE d.id = (ev ->> 'id')::bigint AND d.claim_token = (ev ->> 'token')::bigint AND d.status = 'processing'
       FOR UPDATE;
    IF NOT FOUND THEN
      error := 'lease lost';
      RETURN NEXT;
      CONTINUE;
    END IF;
    BEGIN  -- a subtransaction: a failing call rolls back only its own effect
      EXECUTE format('SELECT %s($1)', fn) USING ev -> 'event';
      error := NULL;
    EXCEPTION WHEN OTHERS THEN
      error := SQLSTATE || ': ' || SQLERRM;
    END;
    RETURN NEXT;
  END LOOP;
END
$fn$;
