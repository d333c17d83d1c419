-- pgrelay 0004: events that cannot be claimed now are kept out of the claim's way, so the
-- cost of a claim depends on the batch and not on how many events wait (docs/claim-query.md).
--   blocked   behind an earlier unfinished event of its key. Set by the producer, which holds
--             the key's lock when it inserts, or by the relay when it gives back the rest of a
--             key's run; the next one is made pending when the key's head finishes.
--   paused    its type is paused (pgrelay pause); pending again on resume.
--   unrouted  no live relay routes its type; pending again when a relay that routes it reports.
-- All three count as unfinished for their key, like pending and processing.
ALTER DOMAIN pgrelay.event_status DROP CONSTRAINT db_events_status_valid;
ALTER DOMAIN pgrelay.event_status ADD CONSTRAINT db_events_status_valid
  CHECK (VALUE IN ('pending', 'processing', 'blocked', 'paused', 'unrouted', 'done', 'dead'));

-- The head check: is there an older unfinished event of the same key?
DROP INDEX pgrelay.db_events_key_head;
CREATE INDEX db_events_key_head ON pgrelay.db_events (key, id)
  WHERE key IS NOT NULL AND status IN ('pending', 'processing', 'blocked', 'paused', 'unrouted');

-- The next blocked event of a key, and the keys that have any (the orphan sweep).
CREATE INDEX db_events_blocked ON pgrelay.db_events (key, id) WHERE status = 'blocked';

-- Events given back on resume, or when a relay that routes their type appears.
CREATE INDEX db_events_parked ON pgrelay.db_events (event_type, id) WHERE status IN ('paused', 'unrouted');

-- What each relay routes, so a type that no live relay routes can be set aside. A relay of
-- an older version reports none of it and counts as routing everything.
ALTER TABLE pgrelay.relays
  ADD COLUMN routes_all    boolean NOT NULL DEFAULT true,
  ADD COLUMN routes_exact  text[]  NOT NULL DEFAULT '{}',
  ADD COLUMN routes_prefix text[]  NOT NULL DEFAULT '{}';
