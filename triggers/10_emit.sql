-- pgrelay.emit() and the wake signal: how applications write events. Re-applied by
-- `pgrelay migrate` whenever this file changes (CREATE OR REPLACE only).

-- The wake signal: in notify mode a statement-level trigger on db_events sends one
-- NOTIFY with a constant payload (PostgreSQL folds identical notifications of one
-- transaction into one); in the poll and wal modes the trigger does not exist, so
-- producers pay nothing for waking and are spared NOTIFY's database-wide commit lock.
-- pgrelay.wake() sends the signal for writes that are not inserts (retry, replay): a
-- NOTIFY in notify mode; in wal mode a transactional logical message (prefix
-- 'pgrelay'), which reaches the wal waker at commit as inserts do; nothing in poll mode.
CREATE OR REPLACE FUNCTION pgrelay.notify_relays() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM pg_notify('pgrelay', '');
  RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION pgrelay.set_wake(mode text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
  has_trigger boolean := EXISTS (SELECT 1 FROM pg_trigger
                                  WHERE tgrelid = 'pgrelay.db_events'::regclass AND tgname = 'pgrelay_wake');
BEGIN
  IF mode IS NULL OR mode NOT IN ('notify', 'poll', 'wal') THEN
    RAISE EXCEPTION 'pgrelay: wake mode must be notify, poll or wal, not %', coalesce(quote_literal(mode), 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- Only a real change touches db_events' triggers (that takes a lock producers wait on).
  IF mode = 'notify' THEN
    IF NOT has_trigger THEN
      CREATE TRIGGER pgrelay_wake AFTER INSERT ON pgrelay.db_events
        FOR EACH STATEMENT EXECUTE FUNCTION pgrelay.notify_relays();
    END IF;
    EXECUTE $w$CREATE OR REPLACE FUNCTION pgrelay.wake() RETURNS void LANGUAGE sql
      AS $b$SELECT pg_notify('pgrelay', '')$b$$w$;
  ELSE
    IF has_trigger THEN
      DROP TRIGGER pgrelay_wake ON pgrelay.db_events;
    END IF;
    IF mode = 'wal' THEN
      EXECUTE $w$CREATE OR REPLACE FUNCTION pgrelay.wake() RETURNS void LANGUAGE sql
        AS $b$SELECT FROM pg_logical_emit_message(true, 'pgrelay', '')$b$$w$;
    ELSE
      EXECUTE $w$CREATE OR REPLACE FUNCTION pgrelay.wake() RETURNS void LANGUAGE sql
        AS $b$SELECT$b$$w$;
    END IF;
  END IF;
  INSERT INTO pgrelay.settings VALUES ('wake', mode)
    ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value;
END
$fn$;

SELECT pgrelay.set_wake(coalesce((SELECT value FROM pgrelay.settings WHERE name = 'wake'), 'notify'));

-- Serialises producers of one key until commit, so that ids of one key are
-- handed out in commit order and the relay's id order per key is commit order
-- (docs/design.md, the contract, point 3).
-- No WHERE clause, so callers get it inlined; a NULL key takes no lock because
-- pg_advisory_xact_lock is strict.
CREATE OR REPLACE FUNCTION pgrelay.lock_key(key text) RETURNS void
LANGUAGE sql AS $fn$
  SELECT pg_advisory_xact_lock(1886221420, hashtext(key))
$fn$;

-- The state a new event of `key` starts in: blocked when the key already has an unfinished
-- event, so that claims never walk it (migration 0004); the relay makes it pending when
-- the events before it finish. Call with the key's lock held (lock_key) and in a statement
-- after it, so what it sees includes every earlier producer of the key. Only in READ
-- COMMITTED: an older snapshot could still see a head the relay has finished since, and
-- its follower would wait for a promotion that already happened (pending is always safe).
CREATE OR REPLACE FUNCTION pgrelay.initial_status(key text) RETURNS text
LANGUAGE sql STABLE AS $fn$
  SELECT CASE WHEN key IS NOT NULL
               AND current_setting('transaction_isolation') = 'read committed'
               AND EXISTS (SELECT 1 FROM pgrelay.db_events o
                            WHERE o.key = initial_status.key
                              AND o.status IN ('pending', 'processing', 'blocked', 'paused', 'unrouted'))
              THEN 'blocked' ELSE 'pending' END
$fn$;

-- `headers` is stored with the event; a traceparent/tracestate in it, or else the
-- transaction's pgrelay.traceparent/tracestate settings, become its trace context
-- (pgrelay.event_headers, 05_trace_context.sql).
CREATE OR REPLACE FUNCTION pgrelay.emit(
  event_type text,
  payload jsonb,
  key text DEFAULT NULL,
  headers jsonb DEFAULT '{}'
) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
  new_id bigint;
BEGIN
  IF payload IS NULL OR jsonb_typeof(payload) <> 'object' THEN
    RAISE EXCEPTION 'pgrelay.emit: payload must be a JSON object, got %', coalesce(jsonb_typeof(payload), 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF pgrelay.capture_mode() = 'wal' THEN
    -- The relay decoding the WAL writes the row (25_wal_capture.sql), in commit order,
    -- so no key lock is needed here. The domains check type and key now, because a
    -- bad one must fail this transaction, not the relay's. There is no id yet: NULL.
    PERFORM pg_logical_emit_message(true, 'pgrelay',
              jsonb_build_object('type', event_type::pgrelay.event_type, 'key', key::pgrelay.event_key,
                                 'payload', payload, 'headers', pgrelay.event_headers(headers))::text);
    RETURN NULL;
  END IF;
  PERFORM pgrelay.lock_key(key);
  INSERT INTO pgrelay.db_events (event_type, key, payload, headers, status)
  VALUES (event_type, key, payload, pgrelay.event_headers(headers), pgrelay.initial_status(key))
  RETURNING id INTO new_id;
  RETURN new_id;
END
$fn$;
