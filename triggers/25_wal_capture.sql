-- Capture mode "wal" (issue 21): what track(), untrack() and emit() do instead of
-- writing db_events rows, and pgrelay.materialize_wal(), which the decoding relay
-- calls to write the events it decoded. Re-applied by `pgrelay migrate` whenever
-- this file changes (CREATE OR REPLACE only). The state: migrations/0007_wal_capture.sql.
--
-- In this mode a tracked table has no capture triggers: it is a member of the
-- publication pgrelay_capture, read from a permanent pgoutput slot by one relay at a
-- time (the slot admits one reader), which writes each committed change as the event
-- trigger capture would have written (same type, key, payload) in commit order.

-- The publication exists before a table is added to it, so that the slot can always
-- be read (a missing publication stops the stream). Creating it needs CREATE on the
-- database; the error says so.
CREATE OR REPLACE FUNCTION pgrelay.ensure_capture_publication() RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'pgrelay_capture') THEN
    RETURN;
  END IF;
  -- Partitions publish as themselves, so events name the partition as trigger capture does.
  CREATE PUBLICATION pgrelay_capture WITH (publish = 'insert, update, delete', publish_via_partition_root = false);
EXCEPTION WHEN insufficient_privilege THEN
  RAISE EXCEPTION 'pgrelay: capture "wal" cannot create the publication pgrelay_capture: %', SQLERRM
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'GRANT CREATE ON DATABASE ' || quote_ident(current_database()) || ' to this role, '
                 'or have an owner run CREATE PUBLICATION pgrelay_capture WITH (publish_via_partition_root = false)';
END
$fn$;

-- Puts a table into the publication. Updates and deletes need the whole old row in
-- the WAL to give the same events as trigger capture (old, changed), which only
-- REPLICA IDENTITY FULL writes; this checks it on the table and each of its partitions
-- and says how to set it, rather than setting it behind the owner's back (it makes
-- every update and delete of the table write more WAL).
CREATE OR REPLACE FUNCTION pgrelay.check_replica_identity(table_name regclass, operations text[]) RETURNS void
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
  lacking regclass;
BEGIN
  IF operations && '{update,delete}' THEN
    SELECT t.relid INTO lacking
      FROM pg_partition_tree(table_name) t JOIN pg_class c ON c.oid = t.relid
     WHERE c.relkind = 'r' AND c.relreplident <> 'f'
     LIMIT 1;
    IF lacking IS NULL AND (SELECT relkind FROM pg_class WHERE oid = table_name) = 'r'
       AND (SELECT relreplident FROM pg_class WHERE oid = table_name) <> 'f' THEN
      lacking := table_name;
    END IF;
    IF lacking IS NOT NULL THEN
      RAISE EXCEPTION 'pgrelay.track: capture "wal" needs REPLICA IDENTITY FULL on % to capture updates and deletes', lacking
        USING ERRCODE = 'object_not_in_prerequisite_state',
              DETAIL = 'Without it the WAL holds only the key of an old row, and the events would lack "old" and "changed".',
              HINT = format('ALTER TABLE %s REPLICA IDENTITY FULL (more WAL per update and delete), '
                            'or track only inserts: operations => ''{insert}''', lacking);
    END IF;
  END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION pgrelay.publish_tracked_table(table_name regclass, operations text[]) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM pgrelay.check_replica_identity(table_name, operations);
  PERFORM pgrelay.ensure_capture_publication();
  IF NOT EXISTS (SELECT 1 FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
                  WHERE p.pubname = 'pgrelay_capture' AND r.prrelid = table_name) THEN
    EXECUTE format('ALTER PUBLICATION pgrelay_capture ADD TABLE %s', table_name);
  END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION pgrelay.unpublish_tracked_table(table_name regclass) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
              WHERE p.pubname = 'pgrelay_capture' AND r.prrelid = table_name) THEN
    EXECUTE format('ALTER PUBLICATION pgrelay_capture DROP TABLE %s', table_name);
  END IF;
END
$fn$;

-- What the server must allow before capture "wal" can start, each said with what to do.
CREATE OR REPLACE FUNCTION pgrelay.check_wal_capture_prerequisites() RETURNS void
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
  IF current_setting('wal_level') <> 'logical' THEN
    RAISE EXCEPTION 'pgrelay: capture "wal" needs wal_level=logical (it is %)', current_setting('wal_level')
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Set wal_level = logical in postgresql.conf and restart the server, or use capture "trigger".';
  END IF;
  IF NOT (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    RAISE EXCEPTION 'pgrelay: capture "wal" needs a role with the REPLICATION attribute (% has not)', current_user
      USING ERRCODE = 'insufficient_privilege',
            HINT = format('ALTER ROLE %I REPLICATION, or use capture "trigger".', current_user);
  END IF;
  -- A slot outlives a failed transaction, so whatever else could fail is checked first.
  PERFORM pgrelay.check_replica_identity(tt.table_name, tt.operations)
     FROM pgrelay.tracked_tables tt WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = tt.table_name);
END
$fn$;

-- Switches the database's capture mode; `pgrelay run` calls it with relay.capture.
-- To 'wal': needs the publication committed first (pgrelay.ensure_capture_publication()
-- in a transaction of its own), creates the slot (first, because a slot cannot be created in a transaction
-- that wrote anything; it needs wal_level=logical and the REPLICATION attribute), then
-- moves every tracked table from its triggers into the publication in this transaction.
-- Table changes committed before this commit were captured by the triggers and are not
-- published; later ones are published and have no triggers, so none is captured twice.
-- To 'trigger': the tables get their triggers back and leave the publication; the slot
-- stays until pgrelay.drop_wal_capture(), so a relay can still write what it holds.
CREATE OR REPLACE FUNCTION pgrelay.set_capture(mode text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
  slot text := pgrelay.capture_slot_name();
  t pgrelay.tracked_tables;
BEGIN
  IF mode IS NULL OR mode NOT IN ('trigger', 'wal') THEN
    RAISE EXCEPTION 'pgrelay: capture mode must be trigger or wal, not %', coalesce(quote_literal(mode), 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF mode = pgrelay.capture_mode() AND (mode = 'trigger' OR EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = slot)) THEN
    RETURN;  -- nothing to do, and no lock taken on the tracked tables
  END IF;
  IF mode = 'wal' AND NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = slot) THEN
    PERFORM pgrelay.check_wal_capture_prerequisites();
    -- pgoutput reads the publication as of each change it decodes, so it must have
    -- been committed before the slot exists: a change before it would stop the stream.
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'pgrelay_capture') THEN
      RAISE EXCEPTION 'pgrelay: capture "wal" needs the publication pgrelay_capture before its slot'
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'SELECT pgrelay.ensure_capture_publication(); then, in a transaction of its own, '
                     'SELECT pgrelay.set_capture(''wal''); (pgrelay run does both)';
    END IF;
    PERFORM pg_create_logical_replication_slot(slot, 'pgoutput');
  END IF;
  INSERT INTO pgrelay.settings VALUES ('capture', mode) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value;
  IF mode = 'wal' THEN
    PERFORM pgrelay.ensure_capture_publication();
    INSERT INTO pgrelay.wal_capture (slot_name) VALUES (slot) ON CONFLICT (slot_name) DO NOTHING;
  END IF;
  FOR t IN SELECT * FROM pgrelay.tracked_tables tt WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = tt.table_name) LOOP
    PERFORM pgrelay.track(t.table_name, t.key_columns, t.include_columns, t.exclude_columns, t.operations, t.event_prefix);
    IF mode = 'trigger' THEN
      PERFORM pgrelay.unpublish_tracked_table(t.table_name);
    END IF;
  END LOOP;
END
$fn$;

-- What `pgrelay uninstall` and a switch back to triggers for good drop: the slot (it
-- holds WAL for as long as it exists) and the publication. Events the slot still held
-- and no relay wrote are gone with it; run it once a relay has caught up (`pgrelay status`).
CREATE OR REPLACE FUNCTION pgrelay.drop_wal_capture() RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
  slot text := pgrelay.capture_slot_name();
  dropped boolean := false;
BEGIN
  IF EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = slot) THEN
    PERFORM pg_drop_replication_slot(slot);
    dropped := true;
  END IF;
  DROP PUBLICATION IF EXISTS pgrelay_capture;
  DELETE FROM pgrelay.wal_capture;
  RETURN dropped;
END
$fn$;

-- Typed rows of one relation: each change's text values (from pgoutput) read back
-- through the relation's row type, so numbers, booleans, arrays, timestamps and
-- composites become what to_jsonb(NEW) makes of them in a trigger. One dynamic query
-- per relation and batch, not per row. `changes` is [[n, new, old], ...]. A relation
-- dropped since gives no rows (its changes are skipped).
CREATE OR REPLACE FUNCTION pgrelay.typed_rows(rel oid, changes jsonb)
RETURNS TABLE (n bigint, new_row jsonb, old_row jsonb)
LANGUAGE plpgsql AS $fn$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = rel) THEN
    RETURN;
  END IF;
  RETURN QUERY EXECUTE format(
    'SELECT (c ->> 0)::bigint,
            CASE WHEN jsonb_typeof(c -> 1) = ''object'' THEN to_jsonb(jsonb_populate_record(NULL::%1$s, c -> 1)) END,
            CASE WHEN jsonb_typeof(c -> 2) = ''object'' THEN to_jsonb(jsonb_populate_record(NULL::%1$s, c -> 2)) END
       FROM jsonb_array_elements($1) c', rel::regclass) USING changes;
END
$fn$;

-- A captured row's payload columns: include (NULL = all) minus exclude, as trigger capture has them.
CREATE OR REPLACE FUNCTION pgrelay.captured_columns(r jsonb, include text[], exclude text[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $fn$
  SELECT CASE WHEN include IS NULL THEN r
              ELSE (SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}') FROM jsonb_each(r) e WHERE e.key = ANY (include))
         END - coalesce(exclude, '{}')
$fn$;

-- Writes the events of decoded transactions (capture/change_batch.hpp builds `changes`,
-- in commit order) and records `end_lsn`, the end of the last of them, in the same
-- transaction. The slot's row is locked first: a second relay writing the same
-- transactions (it took the slot over while this one's batch was in flight) waits,
-- then skips what this one wrote, because changes of a transaction that committed
-- before materialized_lsn are dropped. Returns the number of events written.
-- Ids follow commit order; within the batch a key's later events start blocked behind
-- its first, which starts as pgrelay.initial_status() says, with the key locked as
-- producers lock it.
CREATE OR REPLACE FUNCTION pgrelay.materialize_wal(slot text, end_lsn pg_lsn, changes jsonb) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
  done pg_lsn;
  written bigint;
BEGIN
  SELECT w.materialized_lsn INTO done FROM pgrelay.wal_capture w WHERE w.slot_name = slot FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'pgrelay: slot % is not the capture slot of this database', slot
      USING ERRCODE = 'invalid_parameter_value', HINT = 'SELECT pgrelay.set_capture(''wal'') creates it.';
  END IF;
  IF end_lsn <= done THEN
    RETURN 0;  -- written before (by another relay, or before a crash)
  END IF;
  IF to_regclass('pg_temp.pgrelay_wal_events') IS NULL THEN
    CREATE TEMP TABLE pgrelay_wal_events (n bigint, event_type text, key text, payload jsonb, headers jsonb)
      ON COMMIT DELETE ROWS;
  END IF;

  WITH change AS (
    SELECT e.n, e.v ->> 'op' AS op, (e.v ->> 'r')::oid AS rel, e.v -> 'new' AS new_row, e.v -> 'old' AS old_row,
           e.v -> 'm' AS message
      FROM jsonb_array_elements(changes) WITH ORDINALITY AS e(v, n)
     WHERE (e.v ->> 'c')::pg_lsn >= done
  ), typed AS (
    SELECT c.n, c.op, c.rel, t.new_row, t.old_row
      FROM (SELECT DISTINCT rel FROM change WHERE rel IS NOT NULL) r
     CROSS JOIN LATERAL pgrelay.typed_rows(r.rel, (SELECT jsonb_agg(jsonb_build_array(x.n, x.new_row, x.old_row))
                                                     FROM change x WHERE x.rel = r.rel)) t
      JOIN change c ON c.n = t.n
  ), captured AS (
    -- The tracked table a change belongs to: the relation itself, else its nearest tracked ancestor.
    SELECT ty.n, ty.op, tt.event_prefix, tt.key_columns, s.nspname AS schema_name, k.relname AS table_name,
           (SELECT CASE WHEN n2.nspname = 'public' THEN c2.relname ELSE n2.nspname || '.' || c2.relname END
              FROM pg_class c2 JOIN pg_namespace n2 ON n2.oid = c2.relnamespace WHERE c2.oid = tt.table_name) AS key_name,
           coalesce(ty.new_row, ty.old_row) AS full_row, tt.include_columns IS NOT NULL AS filtered,
           pgrelay.captured_columns(ty.new_row, tt.include_columns, tt.exclude_columns) AS new_row,
           pgrelay.captured_columns(ty.old_row, tt.include_columns, tt.exclude_columns) AS old_row
      FROM typed ty
      JOIN pg_class k ON k.oid = ty.rel
      JOIN pg_namespace s ON s.oid = k.relnamespace
     CROSS JOIN LATERAL (SELECT t.* FROM pgrelay.tracked_tables t
                           JOIN (SELECT ty.rel, 0::bigint
                                  UNION ALL SELECT * FROM pg_partition_ancestors(ty.rel) WITH ORDINALITY) a(relid, depth)
                             ON a.relid = t.table_name
                          ORDER BY a.depth LIMIT 1) tt
     WHERE ty.op = ANY (tt.operations)
  ), row_event AS (
    SELECT c.n, c.event_prefix || '.' || c.op AS event_type, pgrelay.row_key(c.key_name, c.full_row, c.key_columns) AS key,
           jsonb_build_object('op', c.op, 'schema', c.schema_name, 'table', c.table_name,
                              -- the side an operation lacks: '{}' with include columns, as the trigger has it
                              'new', CASE WHEN c.op <> 'delete' THEN c.new_row WHEN c.filtered THEN '{}' END,
                              'old', CASE WHEN c.op <> 'insert' THEN c.old_row WHEN c.filtered THEN '{}' END,
                              'changed', to_jsonb(d.changed)) AS payload
      FROM captured c
     CROSS JOIN LATERAL (SELECT array_agg(nv.key ORDER BY nv.key) AS changed
                           FROM jsonb_each(CASE WHEN c.op = 'update' THEN c.new_row END) nv
                          WHERE nv.value IS DISTINCT FROM c.old_row -> nv.key) d
     -- an update that changes none of the captured columns emits nothing, as in trigger capture
     WHERE c.op <> 'update' OR d.changed IS NOT NULL
  )
  INSERT INTO pg_temp.pgrelay_wal_events (n, event_type, key, payload, headers)
  SELECT n, event_type, key, payload, '{}' FROM row_event
  UNION ALL
  SELECT c.n, c.message ->> 'type', c.message ->> 'key', c.message -> 'payload', coalesce(c.message -> 'headers', '{}')
    FROM change c WHERE c.op = 'message';

  PERFORM pgrelay.lock_key(x.key)
     FROM (SELECT DISTINCT e.key FROM pg_temp.pgrelay_wal_events e WHERE e.key IS NOT NULL ORDER BY 1) x;
  INSERT INTO pgrelay.db_events (event_type, key, payload, headers, status)
  SELECT e.event_type, e.key, e.payload, e.headers,
         CASE WHEN e.key IS NOT NULL AND row_number() OVER (PARTITION BY e.key ORDER BY e.n) > 1 THEN 'blocked'
              ELSE pgrelay.initial_status(e.key) END
    FROM pg_temp.pgrelay_wal_events e
   ORDER BY e.n;
  GET DIAGNOSTICS written = ROW_COUNT;
  UPDATE pgrelay.wal_capture w
     SET materialized_lsn = end_lsn, materialized_at = now(), events = w.events + written
   WHERE w.slot_name = slot;
  RETURN written;
END
$fn$;
