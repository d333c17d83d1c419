-- pgrelay.track()/untrack() and the capture trigger functions. Re-applied by
-- `pgrelay migrate` whenever this file changes (CREATE OR REPLACE only).
--
-- Each captured row becomes the event '<prefix>.<insert|update|delete>' with
-- payload {op, schema, table, new, old, changed} and key '<table>:<key values
-- joined by :>' (none without key columns; the table schema-qualified outside
-- public, and for partitions the tracked parent); an update that changes none of
-- the captured columns emits nothing. Events keep the producing transaction's trace
-- context (pgrelay.traceparent/tracestate, 05_trace_context.sql) in their headers.

-- The event key of a captured row: '<key name>:<key values joined by :>', NULL without key columns.
CREATE OR REPLACE FUNCTION pgrelay.row_key(key_name text, r jsonb, key_columns text[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $fn$
  SELECT CASE cardinality(key_columns)
           WHEN 0 THEN NULL
           WHEN 1 THEN key_name || ':' || coalesce(r ->> key_columns[1], '')
           ELSE (SELECT key_name || ':' || string_agg(coalesce(r ->> c, ''), ':' ORDER BY o)
                   FROM unnest(key_columns) WITH ORDINALITY AS kc(c, o))
         END
$fn$;

-- Statement-level AFTER INSERT or AFTER DELETE trigger with the transition table
-- pgrelay_rows, installed by pgrelay.track() on plain and partitioned tables keyed by
-- their primary key (or not keyed): one INSERT ... SELECT writes the events of every row
-- of the statement, in the order the statement touched them. A bulk statement costs one
-- query instead of one per row, and a single-row INSERT less than with a row trigger.
-- Every key of the statement is locked first, in key order, so that producers of one key
-- (emit, other tables' captures) commit one after another and two bulk statements never
-- deadlock; a row behind an earlier one of its key starts blocked (pgrelay.initial_status).
-- Its arguments are worked out by pgrelay.track() for the one operation it serves,
-- because each expression evaluated here is paid on every statement:
--   0 event type, 1 op ('insert' or 'delete'), 2 'new' or 'old': where the row goes,
--   3 the other of the two, 4 the key column when the key is that single column and
--   every column is captured (the fast path), else '', then for the general path
--   5 key columns, 6 include columns ('' = all), 7 exclude columns; 8 the key name
--   (the tracked table, schema-qualified outside public).
CREATE OR REPLACE FUNCTION pgrelay.capture_rows() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
  key_name text := coalesce(TG_ARGV[8], TG_TABLE_NAME);  -- a trigger from before key names: the table
  trace jsonb := pgrelay.event_headers();  -- the transaction's trace context, once per statement
BEGIN
  IF TG_ARGV[4] <> '' THEN
    PERFORM pgrelay.lock_key(x.k)
       FROM (SELECT DISTINCT key_name || ':' || coalesce(to_jsonb(t) ->> TG_ARGV[4], '') AS k
               FROM pgrelay_rows t ORDER BY 1) x;
    INSERT INTO pgrelay.db_events (event_type, key, payload, headers, status)
    SELECT TG_ARGV[0], r.k,
           jsonb_build_object('op', TG_ARGV[1], 'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,
                              TG_ARGV[2], r.j, TG_ARGV[3], NULL, 'changed', NULL),
           trace,
           CASE WHEN row_number() OVER (PARTITION BY r.k ORDER BY r.n) > 1 THEN 'blocked'
                ELSE pgrelay.initial_status(r.k) END
      FROM (SELECT t.j, t.n, key_name || ':' || coalesce(t.j ->> TG_ARGV[4], '') AS k
              FROM (SELECT to_jsonb(t) AS j, row_number() OVER () AS n FROM pgrelay_rows t) t) r
     ORDER BY r.n;
    RETURN NULL;
  END IF;
  -- The key and the captured columns by the same rules as in pgrelay.capture().
  IF TG_ARGV[5] <> '{}' THEN
    PERFORM pgrelay.lock_key(x.k)
       FROM (SELECT DISTINCT pgrelay.row_key(key_name, to_jsonb(t), TG_ARGV[5]::text[]) AS k
               FROM pgrelay_rows t ORDER BY 1) x;
  END IF;
  INSERT INTO pgrelay.db_events (event_type, key, payload, headers, status)
  SELECT TG_ARGV[0], r.k,
         jsonb_build_object('op', TG_ARGV[1], 'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,
                            TG_ARGV[2], c.j, TG_ARGV[3], NULL, 'changed', NULL),
         trace,
         CASE WHEN r.k IS NOT NULL AND row_number() OVER (PARTITION BY r.k ORDER BY r.n) > 1 THEN 'blocked'
              ELSE pgrelay.initial_status(r.k) END
    FROM (SELECT nullif(TG_ARGV[6], '')::text[] AS include, TG_ARGV[7]::text[] AS exclude) k
   CROSS JOIN (SELECT t.j, t.n, pgrelay.row_key(key_name, t.j, TG_ARGV[5]::text[]) AS k
                 FROM (SELECT to_jsonb(t) AS j, row_number() OVER () AS n FROM pgrelay_rows t) t) r
   CROSS JOIN LATERAL (SELECT CASE WHEN k.include IS NULL THEN r.j
                                   ELSE (SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}')
                                           FROM jsonb_each(r.j) e WHERE e.key = ANY (k.include))
                              END - k.exclude AS j) c
   ORDER BY r.n;
  RETURN NULL;
END
$fn$;

-- Row-level AFTER trigger installed by pgrelay.track() for updates, and for every
-- operation where a statement trigger would not do: on partitions and inheritance
-- children (no transition tables there, and rows may arrive through their parent's
-- statements), and where the key is not the primary key. It takes the row's key lock
-- before writing the row's event. Arguments (TG_ARGV): 0 event prefix, 1 key columns,
-- 2 include columns ('' = all), 3 exclude columns (arrays as text literals), 4 unused
-- (was 'pk'), 5 the key name (the tracked table, schema-qualified outside public).
CREATE OR REPLACE FUNCTION pgrelay.capture() RETURNS trigger
LANGUAGE plpgsql AS $fn$
-- Runs once per captured row, so it evaluates as few expressions as it can: the
-- arrays in TG_ARGV are parsed only when they are not empty, and waking the relay
-- is left to the statement trigger on db_events (notify mode only).
DECLARE
  new_row  jsonb;
  old_row  jsonb;
  full_row jsonb;
  changed  text[];
  ev_key   text;
  cols     text[];
BEGIN
  IF TG_OP = 'INSERT' THEN
    new_row := to_jsonb(NEW);
    full_row := new_row;
  ELSIF TG_OP = 'UPDATE' THEN
    new_row := to_jsonb(NEW);
    old_row := to_jsonb(OLD);
    full_row := new_row;
  ELSE
    old_row := to_jsonb(OLD);
    full_row := old_row;
  END IF;

  IF TG_ARGV[1] <> '{}' THEN
    ev_key := pgrelay.row_key(coalesce(TG_ARGV[5], TG_TABLE_NAME), full_row, TG_ARGV[1]::text[]);
  END IF;

  IF TG_ARGV[2] <> '' THEN
    cols := TG_ARGV[2]::text[];
    SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}') INTO new_row
      FROM jsonb_each(new_row) e WHERE e.key = ANY (cols);
    SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}') INTO old_row
      FROM jsonb_each(old_row) e WHERE e.key = ANY (cols);
  END IF;
  IF TG_ARGV[3] <> '{}' THEN
    cols := TG_ARGV[3]::text[];
    new_row := new_row - cols;
    old_row := old_row - cols;
  END IF;

  IF TG_OP = 'UPDATE' THEN
    SELECT array_agg(n.key ORDER BY n.key) INTO changed
      FROM jsonb_each(new_row) n
     WHERE n.value IS DISTINCT FROM old_row -> n.key;
    IF changed IS NULL THEN
      RETURN NULL;
    END IF;
  END IF;

  -- Even a key made of the primary key: the row lock orders one row's writers, but not
  -- an emit() or another table's capture of the same key string.
  IF ev_key IS NOT NULL THEN
    PERFORM pgrelay.lock_key(ev_key);
  END IF;
  INSERT INTO pgrelay.db_events (event_type, key, payload, headers, status)
  VALUES (TG_ARGV[0] || '.' || lower(TG_OP), ev_key,
          jsonb_build_object('op', lower(TG_OP), 'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,
                             'new', new_row, 'old', old_row, 'changed', to_jsonb(changed)),
          pgrelay.event_headers(),
          pgrelay.initial_status(ev_key));
  RETURN NULL;
END
$fn$;

-- The columns of a table's primary key, in key order ('{}' without one).
CREATE OR REPLACE FUNCTION pgrelay.primary_key_columns(table_name regclass) RETURNS text[]
LANGUAGE sql STABLE AS $fn$
  SELECT coalesce(array_agg(a.attname::text ORDER BY k.ord), '{}')
    FROM pg_index i
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
   WHERE i.indrelid = table_name AND i.indisprimary
$fn$;

-- Whether pgrelay.track() captures a table's inserts and deletes per row rather than
-- per statement (see pgrelay.capture): a key that is not the primary key, or a
-- partition or inheritance child.
CREATE OR REPLACE FUNCTION pgrelay.captures_per_row(table_name regclass, key_columns text[]) RETURNS boolean
LANGUAGE sql STABLE AS $fn$
  SELECT (cardinality(key_columns) > 0 AND key_columns <> pgrelay.primary_key_columns(table_name))
         OR EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = table_name)
$fn$;

-- Drops whichever capture triggers pgrelay.track() put on a table.
CREATE OR REPLACE FUNCTION pgrelay.drop_capture_triggers(table_name regclass) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
  name text;
BEGIN
  FOR name IN SELECT t.tgname FROM pg_trigger t
               WHERE t.tgrelid = table_name AND NOT t.tgisinternal
                 AND t.tgname IN ('pgrelay_capture', 'pgrelay_capture_insert', 'pgrelay_capture_delete') LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', name, table_name);
  END LOOP;
END
$fn$;

-- Installs the capture triggers on a table (replacing an earlier one).
--   key_columns: columns whose values form the ordering key (default: the primary key;
--                '{}' for no key, so the table's events flow fully in parallel)
--   include_columns / exclude_columns: which columns the payload carries
--   operations: any of insert, update, delete
--   event_prefix: event types become '<prefix>.<op>' (default: the table name)
CREATE OR REPLACE FUNCTION pgrelay.track(
  table_name regclass,
  key_columns text[] DEFAULT NULL,
  include_columns text[] DEFAULT NULL,
  exclude_columns text[] DEFAULT '{}',
  operations text[] DEFAULT '{insert,update,delete}',
  event_prefix text DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
  rel_name text;
  ops text[];
  pk_columns text[];
  bad text;
  args text;
  fast_key text;
  general_args text;
  row_only boolean;
  row_ops text[];
  key_name text;
BEGIN
  SELECT c.relname INTO rel_name FROM pg_class c WHERE c.oid = table_name AND c.relkind IN ('r', 'p');
  IF rel_name IS NULL THEN
    RAISE EXCEPTION 'pgrelay.track: % is not a table', table_name USING ERRCODE = 'wrong_object_type';
  END IF;
  -- A capture trigger on pgrelay's own tables would write an event for every
  -- event it writes: every emit would then fail with "stack depth limit exceeded".
  IF (SELECT c.relnamespace FROM pg_class c WHERE c.oid = table_name) = 'pgrelay'::regnamespace THEN
    RAISE EXCEPTION 'pgrelay.track: % belongs to pgrelay itself and cannot be tracked', table_name
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  pk_columns := pgrelay.primary_key_columns(table_name);
  key_columns := coalesce(key_columns, pk_columns);
  SELECT c INTO bad FROM unnest(key_columns || coalesce(include_columns, '{}') || coalesce(exclude_columns, '{}')) c
   WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                      WHERE a.attrelid = table_name AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped)
   LIMIT 1;
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION 'pgrelay.track: table % has no column %', table_name, quote_ident(bad)
      USING ERRCODE = 'undefined_column';
  END IF;
  SELECT array_agg(DISTINCT lower(o)) INTO ops FROM unnest(operations) o;
  SELECT o INTO bad FROM unnest(ops) o WHERE o NOT IN ('insert', 'update', 'delete') LIMIT 1;
  IF bad IS NOT NULL OR ops IS NULL THEN
    RAISE EXCEPTION 'pgrelay.track: operations must be among insert, update, delete (got %)', operations
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- The default prefix is the table name, with characters event types cannot hold replaced.
  event_prefix := coalesce(event_prefix, left(regexp_replace(rel_name, '[^A-Za-z0-9_.:-]', '_', 'g'), 180));
  IF event_prefix !~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,180}$' THEN
    RAISE EXCEPTION 'pgrelay.track: event prefix % may hold only letters, digits, _ . : -', quote_literal(event_prefix)
      USING ERRCODE = 'invalid_parameter_value';
  END IF;

  -- Keys name the table, schema-qualified outside public, so two schemas' tables never share keys.
  SELECT CASE WHEN n.nspname = 'public' THEN c.relname ELSE n.nspname || '.' || c.relname END INTO key_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = table_name;
  args := format('%L, %L, %L, %L, %L, %L', event_prefix, key_columns::text, coalesce(include_columns::text, ''),
                 coalesce(exclude_columns, '{}')::text, '', key_name);
  fast_key := CASE WHEN cardinality(key_columns) = 1 AND include_columns IS NULL
                        AND cardinality(coalesce(exclude_columns, '{}')) = 0 THEN key_columns[1] ELSE '' END;
  general_args := format('%L, %L, %L, %L, %L', fast_key, key_columns::text, coalesce(include_columns::text, ''),
                         coalesce(exclude_columns, '{}')::text, key_name);
  row_only := pgrelay.captures_per_row(table_name, key_columns);
  row_ops := CASE WHEN row_only THEN ops ELSE array(SELECT o FROM unnest(ops) o WHERE o = 'update') END;

  PERFORM pgrelay.drop_capture_triggers(table_name);
  IF pgrelay.capture_mode() = 'wal' THEN
    -- No triggers: the table's changes reach the relay through the publication (25_wal_capture.sql).
    PERFORM pgrelay.publish_tracked_table(table_name, ops);
    row_ops := '{}';
    row_only := true;
  END IF;
  IF cardinality(row_ops) > 0 THEN
    EXECUTE format('CREATE TRIGGER pgrelay_capture AFTER %s ON %s FOR EACH ROW EXECUTE FUNCTION pgrelay.capture(%s)',
                   array_to_string(row_ops, ' OR '), table_name, args);
  END IF;
  IF NOT row_only AND 'insert' = ANY (ops) THEN
    EXECUTE format('CREATE TRIGGER pgrelay_capture_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS pgrelay_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION pgrelay.capture_rows(%L, %L, %L, %L, %s)',
                   table_name, event_prefix || '.insert', 'insert', 'new', 'old', general_args);
  END IF;
  IF NOT row_only AND 'delete' = ANY (ops) THEN
    EXECUTE format('CREATE TRIGGER pgrelay_capture_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS pgrelay_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION pgrelay.capture_rows(%L, %L, %L, %L, %s)',
                   table_name, event_prefix || '.delete', 'delete', 'old', 'new', general_args);
  END IF;

  INSERT INTO pgrelay.tracked_tables (table_name, event_prefix, key_columns, include_columns, exclude_columns, operations)
  VALUES (table_name, event_prefix, key_columns, include_columns, coalesce(exclude_columns, '{}'), ops)
  ON CONFLICT ON CONSTRAINT tracked_tables_pkey DO UPDATE
    SET event_prefix = EXCLUDED.event_prefix, key_columns = EXCLUDED.key_columns,
        include_columns = EXCLUDED.include_columns, exclude_columns = EXCLUDED.exclude_columns,
        operations = EXCLUDED.operations, tracked_at = now();
END
$fn$;

-- Removes the capture triggers, or the table from the capture publication; events already written stay.
CREATE OR REPLACE FUNCTION pgrelay.untrack(table_name regclass) RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM pgrelay.drop_capture_triggers(table_name);
  IF to_regprocedure('pgrelay.unpublish_tracked_table(regclass)') IS NOT NULL THEN
    PERFORM pgrelay.unpublish_tracked_table(table_name);  -- capture "wal" (25_wal_capture.sql)
  END IF;
  DELETE FROM pgrelay.tracked_tables t WHERE t.table_name = untrack.table_name;
  RETURN FOUND;
END
$fn$;

-- Tables tracked by an earlier release whose triggers pgrelay.track() would now install
-- differently are tracked again with their own options (a brief lock per table, as
-- pgrelay.track() takes): tables that would now get statement triggers for inserts and
-- deletes, and triggers without the key-name argument (key names are schema-qualified
-- outside public since 0.4, and partitions' keys name the tracked table). The others are
-- left alone, so re-applying this file does not touch them every time. A table that
-- cannot be re-tracked (a key column dropped since, say) keeps its trigger, which still
-- captures everything, and the migration goes on with a warning.
DO $upgrade$
DECLARE
  t pgrelay.tracked_tables;
BEGIN
  -- In capture "wal" tracked tables have no triggers by design.
  IF EXISTS (SELECT 1 FROM pgrelay.settings WHERE name = 'capture' AND value = 'wal') THEN
    RETURN;
  END IF;
  FOR t IN SELECT * FROM pgrelay.tracked_tables tt
            WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = tt.table_name)
              AND ((tt.operations && '{insert,delete}'
                    AND NOT pgrelay.captures_per_row(tt.table_name, tt.key_columns)
                    AND NOT EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = tt.table_name
                                       AND g.tgname IN ('pgrelay_capture_insert', 'pgrelay_capture_delete')))
                   OR EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = tt.table_name AND NOT g.tgisinternal
                                 AND ((g.tgname = 'pgrelay_capture' AND g.tgnargs < 6)
                                      OR (g.tgname IN ('pgrelay_capture_insert', 'pgrelay_capture_delete')
                                          AND g.tgnargs < 9)))) LOOP
    BEGIN
      PERFORM pgrelay.track(t.table_name, t.key_columns, t.include_columns, t.exclude_columns, t.operations, t.event_prefix);
      UPDATE pgrelay.tracked_tables SET tracked_at = t.tracked_at WHERE table_name = t.table_name;
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING 'pgrelay: % keeps its earlier capture trigger: %', t.table_name, SQLERRM;
    END;
  END LOOP;
END
$upgrade$;
