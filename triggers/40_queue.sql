-- The relay's side of pgrelay.db_events as functions: claim, ack, and the moves that keep
-- waiting events out of the claim's way (docs/claim-query.md). One round trip each, no
-- named prepared statement needed (PgBouncer in transaction mode), and each statement
-- inside takes a fresh snapshot (READ COMMITTED), which the key handshake below relies on.
-- Re-applied by `pgrelay migrate` whenever this file changes. The hot ones carry
-- SET jit = off: their estimated cost can cross jit_above_cost, and compiling them
-- cost more than running them (a per-call setting, so it holds behind a pooler).
--
-- Unfinished states: pending, processing, blocked, paused, unrouted (migration 0004).
-- Only pending events (and processing ones whose lease ran out) are in the due index.

-- A paused_types entry as a LIKE pattern: 'user.*' -> 'user.%' (and '*' -> '%'); '_' escaped.
CREATE OR REPLACE FUNCTION pgrelay.type_pattern(entry text) RETURNS text
LANGUAGE sql IMMUTABLE AS $fn$
  SELECT CASE WHEN right(entry, 1) = '*' THEN replace(left(entry, -1), '_', '\_') || '%'
              ELSE replace(entry, '_', '\_') END
$fn$;

-- Whether any relay seen in the last 30 seconds routes events of this type.
CREATE OR REPLACE FUNCTION pgrelay.routed_by_a_live_relay(type_name text) RETURNS boolean
LANGUAGE sql STABLE AS $fn$
  SELECT EXISTS (SELECT 1 FROM pgrelay.relays r
                  WHERE r.seen_at > now() - interval '30 seconds'
                    AND (r.routes_all OR type_name = ANY (r.routes_exact) OR type_name LIKE ANY (r.routes_prefix)))
$fn$;

-- The document a handler receives for a claimed event, as text (no jsonb round trip).
CREATE OR REPLACE FUNCTION pgrelay.claimed_doc(e pgrelay.db_events, attempt int) RETURNS text
LANGUAGE sql STABLE AS $fn$
  SELECT '{"id":' || e.id || ',"type":' || to_json(e.event_type::text) || ',"key":'
         || coalesce(to_json(e.key::text)::text, 'null') || ',"payload":' || e.payload || ',"headers":'
         || e.headers || ',"created_at":' || to_json(e.created_at) || ',"attempt":' || attempt || '}'
$fn$;

-- The claim. Takes up to `heads_max` heads in due order (unkeyed events, or the oldest
-- unfinished event of a key), and behind each keyed head the run of its key's next events
-- (up to `run_max` per key, `events_max` in all), which the relay delivers one after another
-- without a round trip between them. A run stops at the first event that is not claimable
-- (not due, paused, not routed here, or locked).
-- `lease_ms` > 0: each event gets status processing, a lease and the claim's token.
-- `lease_ms` = 0: a transactional claim: the rows are only locked; the caller's transaction
-- stays open while they are delivered (token 0).
-- On its way through the due index it sets aside events of paused types and of types no live
-- relay routes, so that later claims do not walk them again. It reads at most four windows;
-- when it stops there with due events left unread, it returns a last row with id 0 (and
-- nothing else in it): the caller should claim again at once rather than wait.
CREATE OR REPLACE FUNCTION pgrelay.claim(
  heads_max int, events_max int, run_max int, lease_ms bigint, owner_name text,
  routes_all boolean, routes_exact text[], routes_prefix text[])
RETURNS TABLE (ev_id bigint, ev_type text, ev_key text, ev_attempt int, ev_token bigint, ev_done text[],
               ev_was text, ev_doc text)
LANGUAGE plpgsql SET jit = off AS $fn$
#variable_conflict use_column
DECLARE
  paused text[] := ARRAY(SELECT pgrelay.type_pattern(p.event_type) FROM pgrelay.paused_types p);
  after_at timestamptz := '-infinity';
  after_id bigint := 0;
  heads bigint[] := '{}';
  found bigint[];
  aside_paused bigint[];
  aside_unrouted bigint[];
  scanned int;
  window_size int;
  last_at timestamptz;
  last_id bigint;
  members bigint[] := '{}';
  member_keys text[];
  locked bigint[];
  token bigint := 0;
  more boolean := false;
  keyed int;
  keyed_found int := 0;
  per_key int;
BEGIN
  FOR pass IN 1..4 LOOP
    EXIT WHEN cardinality(heads) >= heads_max;
    window_size := (heads_max - cardinality(heads)) * 2 + 64;
    WITH w AS (
      SELECT e.id, e.event_type, e.key, e.next_attempt_at
        FROM pgrelay.db_events e
       WHERE e.status IN ('pending', 'processing') AND e.next_attempt_at <= now()
         AND (e.next_attempt_at, e.id) > (after_at, after_id)
       ORDER BY e.next_attempt_at, e.id
       LIMIT window_size
    ), c AS (
      SELECT w.id, w.next_attempt_at, w.key IS NOT NULL AS keyed,
             CASE WHEN w.event_type LIKE ANY (paused) THEN 'paused'
                  WHEN NOT (routes_all OR w.event_type = ANY (routes_exact) OR w.event_type LIKE ANY (routes_prefix))
                    THEN CASE WHEN pgrelay.routed_by_a_live_relay(w.event_type) THEN 'elsewhere' ELSE 'unrouted' END
                  WHEN w.key IS NOT NULL AND EXISTS (
                         SELECT 1 FROM pgrelay.db_events o
                          WHERE o.key = w.key AND o.id < w.id
                            AND o.status IN ('pending', 'processing', 'blocked', 'paused', 'unrouted'))
                    THEN 'follower'
                  ELSE 'head' END AS class
        FROM w
    )
    -- No ORDER BY in the aggregates: the statements that use them order by themselves, and
    -- sorting the window (three times) cost more than the rest of a claim together.
    SELECT count(*)::int,
           array_agg(c.id) FILTER (WHERE c.class = 'head'),
           array_agg(c.id) FILTER (WHERE c.class = 'paused'),
           array_agg(c.id) FILTER (WHERE c.class = 'unrouted'),
           max(c.next_attempt_at),
           (SELECT max(l.id) FROM c l WHERE l.next_attempt_at = (SELECT max(m.next_attempt_at) FROM c m)),
           count(*) FILTER (WHERE c.class = 'head' AND c.keyed)::int
      INTO scanned, found, aside_paused, aside_unrouted, last_at, last_id, keyed
      FROM c;

    -- Set aside what no claim can take now. The pause entry is locked (key share) while its
    -- events are set aside, so a resume, which deletes it first, sees them afterwards.
    IF aside_paused IS NOT NULL THEN
      UPDATE pgrelay.db_events e SET status = 'paused'
       WHERE e.id = ANY (aside_paused) AND e.status = 'pending'
         AND EXISTS (SELECT 1 FROM pgrelay.paused_types p
                      WHERE e.event_type LIKE pgrelay.type_pattern(p.event_type) FOR KEY SHARE);
    END IF;
    IF aside_unrouted IS NOT NULL THEN
      UPDATE pgrelay.db_events e SET status = 'unrouted'
       WHERE e.id = ANY (aside_unrouted) AND e.status = 'pending' AND NOT pgrelay.routed_by_a_live_relay(e.event_type);
    END IF;

    -- The common case: the first window holds the whole claim and none of it is keyed (so no
    -- runs either): lock it by walking the window again in due order, taking what this pass
    -- classified as a head (unkeyed, routed here, not paused), rather than looking up each id.
    IF pass = 1 AND found IS NOT NULL AND keyed = 0 AND (cardinality(found) >= heads_max OR scanned < window_size) THEN
      heads := ARRAY(
        SELECT e.id FROM pgrelay.db_events e
         WHERE e.status IN ('pending', 'processing') AND e.next_attempt_at <= now()
           AND (e.next_attempt_at, e.id) <= (last_at, last_id) AND e.key IS NULL AND NOT (e.event_type LIKE ANY (paused))
           AND (routes_all OR e.event_type = ANY (routes_exact) OR e.event_type LIKE ANY (routes_prefix))
         ORDER BY e.next_attempt_at, e.id
         LIMIT heads_max
           FOR UPDATE SKIP LOCKED);
      EXIT;
    END IF;
    keyed_found := keyed_found + keyed;
    IF found IS NOT NULL THEN
      heads := heads || ARRAY(
        SELECT e.id FROM pgrelay.db_events e
         WHERE e.id = ANY (found) AND e.status IN ('pending', 'processing') AND e.next_attempt_at <= now()
         ORDER BY e.next_attempt_at, e.id
         LIMIT heads_max - cardinality(heads)
           FOR UPDATE SKIP LOCKED);
    END IF;
    EXIT WHEN scanned < window_size;  -- the window reached the end of what is due
    after_at := last_at;
    after_id := last_id;
    more := pass = 4;
  END LOOP;
  IF more AND cardinality(heads) < heads_max THEN
    ev_id := 0;
    RETURN NEXT;
  END IF;

  IF cardinality(heads) = 0 THEN
    RETURN;
  END IF;

  -- The runs: behind each keyed head, its key's next unfinished events in id order, as long
  -- as each is claimable here; taken round-robin across keys (every key's first follower,
  -- then every key's second, ...) up to events_max in all.
  -- Each key reads only its share of the room left, rather than its whole run_max: with many
  -- keys, reading 255 events per key to take 3 of each cost more than the rest of the claim.
  -- The share divides by the keyed heads found, which may exceed those locked: a claim
  -- mixing keyed and unkeyed heads may take less than events_max, never more.
  per_key := least(run_max - 1,
                   ceil((events_max - cardinality(heads))::numeric / greatest(least(keyed_found, cardinality(heads)), 1))::int);
  IF run_max > 1 AND events_max > cardinality(heads) AND keyed_found > 0 THEN
    WITH h AS (
      SELECT e.id, e.key FROM pgrelay.db_events e WHERE e.id = ANY (heads) AND e.key IS NOT NULL
    ), f AS (
      SELECT n.id, n.key, n.ok, row_number() OVER (PARTITION BY n.key ORDER BY n.id) AS pos, h.id AS head
        FROM h CROSS JOIN LATERAL (
          SELECT o.id, o.key,
                 o.status IN ('pending', 'blocked') AND o.next_attempt_at <= now()
                   AND NOT (o.event_type LIKE ANY (paused))
                   AND (routes_all OR o.event_type = ANY (routes_exact) OR o.event_type LIKE ANY (routes_prefix)) AS ok
            FROM pgrelay.db_events o
           -- "id + 0": not an index condition, so the planner takes the key index (key, id)
           -- rather than walking the primary key past other keys' events (a hot key's).
           WHERE o.key = h.key AND o.id + 0 > h.id
             AND o.status IN ('pending', 'processing', 'blocked', 'paused', 'unrouted')
           ORDER BY o.key, o.id
           LIMIT per_key) n
    ), runs AS (
      SELECT f.id, f.key, f.pos, f.head, bool_and(f.ok) OVER (PARTITION BY f.key ORDER BY f.id) AS contiguous FROM f
    )
    SELECT coalesce(array_agg(r.id ORDER BY r.pos, r.head), '{}'), array_agg(r.key ORDER BY r.pos, r.head)
      INTO members, member_keys
      FROM (SELECT runs.* FROM runs WHERE runs.contiguous ORDER BY runs.pos, runs.head
             LIMIT events_max - cardinality(heads)) r;
    -- A member that changed or is locked meanwhile cuts its key's run there.
    IF cardinality(members) > 0 THEN
      locked := ARRAY(SELECT o.id FROM pgrelay.db_events o
                       WHERE o.id = ANY (members) AND o.status IN ('pending', 'blocked')
                         AND NOT (o.event_type LIKE ANY (paused))
                         FOR UPDATE SKIP LOCKED);
      members := ARRAY(
        SELECT m.id FROM (
          SELECT u.id, bool_and(u.id = ANY (locked)) OVER (PARTITION BY u.key ORDER BY u.id) AS ok
            FROM unnest(members, member_keys) AS u(id, key)) m
         WHERE m.ok);
    END IF;
  END IF;

  IF lease_ms > 0 THEN
    token := nextval('pgrelay.claim_token_seq');
    RETURN QUERY
    WITH old AS (
      SELECT x.id, x.status::text AS was FROM pgrelay.db_events x WHERE x.id = ANY (heads || members)
    ), claimed AS (
      UPDATE pgrelay.db_events e
         SET status = 'processing',
             attempts = e.attempts + 1,
             next_attempt_at = now() + lease_ms * interval '1 millisecond',
             lease_owner = owner_name,
             claim_token = token
        FROM old
       WHERE e.id = old.id
      RETURNING e.id, e.event_type::text AS t, e.key::text AS k, e.attempts, e.claim_token, e.handlers_done, old.was,
                pgrelay.claimed_doc(e, e.attempts) AS doc
    )
    SELECT c.id, c.t, c.k, c.attempts, c.claim_token, c.handlers_done, c.was, c.doc FROM claimed c ORDER BY c.id;
  ELSE
    RETURN QUERY
    SELECT e.id, e.event_type::text, e.key::text, e.attempts + 1, 0::bigint, e.handlers_done, e.status::text,
           pgrelay.claimed_doc(e, e.attempts + 1)
      FROM pgrelay.db_events e
     WHERE e.id = ANY (heads || members)
     ORDER BY e.id;
  END IF;
END
$fn$;

-- Makes the next blocked event of each key pending where nothing older of the key is still
-- unfinished. Producers insert a key's events while holding the key's advisory lock, and
-- decide there whether the new event is blocked; taking that lock here (without waiting)
-- before looking, in a statement of its own, means every producer of the key that could
-- have seen the finished head unfinished has committed and is visible. A key whose lock is
-- busy is returned: its producer is still in its transaction, and the caller tries again.
CREATE OR REPLACE FUNCTION pgrelay.promote(keys text[]) RETURNS text[]
LANGUAGE plpgsql SET jit = off AS $fn$
DECLARE
  locked text[];
BEGIN
  IF keys IS NULL OR cardinality(keys) = 0 THEN
    RETURN '{}';
  END IF;
  SELECT coalesce(array_agg(k.key) FILTER (WHERE k.got), '{}'), coalesce(array_agg(k.key) FILTER (WHERE NOT k.got), '{}')
    INTO locked, keys
    FROM (SELECT u.key, pg_try_advisory_xact_lock(1886221420, hashtext(u.key)) AS got
            FROM (SELECT DISTINCT x AS key FROM unnest(keys) x) u) k;
  UPDATE pgrelay.db_events e SET status = 'pending'
    FROM (SELECT (SELECT b.id FROM pgrelay.db_events b WHERE b.key = l.key AND b.status = 'blocked'
                     ORDER BY b.key, b.id LIMIT 1) AS id
            FROM unnest(locked) AS l(key)) n
   WHERE e.id = n.id AND e.status = 'blocked'
     AND NOT EXISTS (SELECT 1 FROM pgrelay.db_events o
                      WHERE o.key = e.key AND o.id < e.id AND o.status IN ('pending', 'processing', 'paused', 'unrouted'));
  RETURN keys;
END
$fn$;

-- Records outcomes, fenced: a lease claim's by its token, a transactional claim's (`locked`)
-- by the row lock its own transaction holds. Kinds: done (deleted, or kept when keep_done),
-- retry and release (pending again after delay_ms; release gives the attempt back), dead, and
-- hold (blocked again behind its key's head, the attempt given back: the rest of a run whose
-- event failed). An outcome marked run_goes_on is one whose key's next event the relay
-- holds already, in the run it delivers: its key needs no promotion (looking would walk the
-- key's finished events still in the index, a millisecond per ack deep into a long run).
-- Then promotes the next event of each key whose head finished, and of
-- `more_keys` (keys an earlier promotion found busy); and of each key an event was held
-- in, for a hold that comes after its head finished (a relay whose lease ran out acking
-- late) would otherwise wait for the orphan sweep.
-- Returns the ids whose outcome was applied and the keys still to promote.
CREATE OR REPLACE FUNCTION pgrelay.ack(acks jsonb, keep_done boolean, locked boolean, more_keys text[],
                                       OUT applied bigint[], OUT busy_keys text[])
LANGUAGE plpgsql SET jit = off AS $fn$
DECLARE
  finished text[];
BEGIN
  WITH a AS (
    SELECT * FROM jsonb_to_recordset(acks)
                    AS a(id bigint, token bigint, kind text, delay_ms bigint, error text, done text[], run_goes_on boolean)
  ), removed AS (
    DELETE FROM pgrelay.db_events e USING a
     WHERE NOT keep_done AND a.kind = 'done' AND e.id = a.id
       AND CASE WHEN locked THEN e.status IN ('pending', 'blocked') ELSE e.claim_token = a.token AND e.status = 'processing' END
    RETURNING e.id, e.key, a.run_goes_on
  ), updated AS (
    UPDATE pgrelay.db_events e
       SET status = CASE a.kind WHEN 'done' THEN 'done' WHEN 'dead' THEN 'dead' WHEN 'hold' THEN 'blocked' ELSE 'pending' END,
           attempts = CASE WHEN a.kind IN ('release', 'hold') THEN CASE WHEN locked THEN e.attempts ELSE greatest(e.attempts - 1, 0) END
                           ELSE CASE WHEN locked THEN e.attempts + 1 ELSE e.attempts END END,
           -- A held event is due as soon as it is promoted, not when the lease it had ran out.
           next_attempt_at = CASE WHEN a.kind IN ('retry', 'release') THEN now() + a.delay_ms * interval '1 millisecond'
                                  WHEN a.kind = 'hold' THEN now()
                                  ELSE e.next_attempt_at END,
           last_error = coalesce(a.error, e.last_error),
           handlers_done = CASE WHEN a.done IS NULL THEN e.handlers_done ELSE e.handlers_done || a.done END,
           lease_owner = NULL,
           claim_token = NULL,
           finished_at = CASE WHEN a.kind IN ('done', 'dead') THEN now() END
      FROM a
     WHERE (keep_done OR a.kind <> 'done') AND e.id = a.id
       AND CASE WHEN locked THEN e.status IN ('pending', 'blocked') ELSE e.claim_token = a.token AND e.status = 'processing' END
    RETURNING e.id, e.key, a.kind, a.run_goes_on
  )
  SELECT array(SELECT r.id FROM removed r UNION ALL SELECT u.id FROM updated u),
         array(SELECT r.key FROM removed r WHERE r.key IS NOT NULL AND r.run_goes_on IS NOT TRUE
               UNION SELECT u.key FROM updated u
                      WHERE u.key IS NOT NULL AND u.kind IN ('done', 'dead', 'hold') AND u.run_goes_on IS NOT TRUE)
    INTO applied, finished;
  finished := finished || coalesce(more_keys, '{}');
  busy_keys := CASE WHEN cardinality(finished) > 0 THEN pgrelay.promote(finished) ELSE '{}' END;
END
$fn$;

-- The common case of ack(): every outcome a success and nothing kept, without JSON.
-- (The form without run_goes_on, of 0.x relays, is this one with its default.)
DROP FUNCTION IF EXISTS pgrelay.ack_done(bigint[], bigint[], boolean, text[]);
CREATE OR REPLACE FUNCTION pgrelay.ack_done(ids bigint[], tokens bigint[], locked boolean, more_keys text[],
                                            run_goes_on boolean[] DEFAULT NULL,
                                            OUT applied bigint[], OUT busy_keys text[])
LANGUAGE plpgsql SET jit = off AS $fn$
DECLARE
  finished text[];
BEGIN
  WITH removed AS (
    DELETE FROM pgrelay.db_events e
     USING unnest(ids, tokens, run_goes_on) AS a(id, token, run_goes_on)
     WHERE e.id = a.id
       AND CASE WHEN locked THEN e.status IN ('pending', 'blocked') ELSE e.claim_token = a.token AND e.status = 'processing' END
    RETURNING e.id, e.key, a.run_goes_on
  )
  SELECT array(SELECT r.id FROM removed r),
         array(SELECT DISTINCT r.key FROM removed r WHERE r.key IS NOT NULL AND r.run_goes_on IS NOT TRUE)
    INTO applied, finished;
  finished := finished || coalesce(more_keys, '{}');
  busy_keys := CASE WHEN cardinality(finished) > 0 THEN pgrelay.promote(finished) ELSE '{}' END;
END
$fn$;

-- Keys whose next blocked event has nothing unfinished before it: left behind when a relay
-- died with promotions still to do, or by a producer in a REPEATABLE READ transaction.
-- Visits each key with blocked events once (a skip scan of db_events_blocked).
CREATE OR REPLACE FUNCTION pgrelay.orphaned_keys(max_keys int) RETURNS text[]
LANGUAGE sql STABLE AS $fn$
  WITH RECURSIVE k(key) AS (
    (SELECT b.key FROM pgrelay.db_events b WHERE b.status = 'blocked' ORDER BY b.key LIMIT 1)
    UNION ALL
    SELECT (SELECT b.key FROM pgrelay.db_events b WHERE b.status = 'blocked' AND b.key > k.key ORDER BY b.key LIMIT 1)
      FROM k WHERE k.key IS NOT NULL
  )
  SELECT coalesce(array_agg(k.key), '{}') FROM (
    SELECT k.key FROM k
     WHERE k.key IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pgrelay.db_events o
                        WHERE o.key = k.key AND o.status IN ('pending', 'processing', 'paused', 'unrouted')
                          AND o.id < (SELECT min(b.id) FROM pgrelay.db_events b WHERE b.key = k.key AND b.status = 'blocked'))
     LIMIT max_keys) k
$fn$;

-- A relay that routes these types takes back the events set aside as unrouted.
-- It visits each type set aside once (a skip scan of db_events_parked), then only the
-- events of the types it routes: every relay runs it at every report.
CREATE OR REPLACE FUNCTION pgrelay.take_back_unrouted(routes_all boolean, routes_exact text[], routes_prefix text[])
RETURNS bigint
LANGUAGE sql AS $fn$
  WITH RECURSIVE t(type) AS (
    (SELECT e.event_type::text FROM pgrelay.db_events e WHERE e.status IN ('paused', 'unrouted')
      ORDER BY e.event_type LIMIT 1)
    UNION ALL
    SELECT (SELECT e.event_type::text FROM pgrelay.db_events e
             WHERE e.status IN ('paused', 'unrouted') AND e.event_type > t.type ORDER BY e.event_type LIMIT 1)
      FROM t WHERE t.type IS NOT NULL
  ), mine AS (
    SELECT t.type FROM t
     WHERE t.type IS NOT NULL AND (routes_all OR t.type = ANY (routes_exact) OR t.type LIKE ANY (routes_prefix))
  ), back AS (
    UPDATE pgrelay.db_events e SET status = 'pending'
      FROM mine WHERE e.event_type = mine.type AND e.status = 'unrouted'
    RETURNING 1
  )
  SELECT count(*) FROM back
$fn$;
