-- pgrelay.track()/untrack() and the row-capture trigger function. Re-applied by
-- `pgrelay migrate` whenever this file changes (CREATE OR REPLACE only).

-- Row-level AFTER trigger installed by pgrelay.track(). Arguments (TG_ARGV):
--   0 event prefix, 1 key columns, 2 include columns ('' = all), 3 exclude columns
-- (arrays as text literals), 4 'pk' when the key columns are the primary key. The event is '<prefix>.<insert|update|delete>' with
-- payload {op, schema, table, new, old, changed}; an update that changes none of
-- the captured columns emits nothing.
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
  key_cols text[];
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
    key_cols := TG_ARGV[1]::text[];
    IF cardinality(key_cols) = 1 THEN  -- the common case, without a sub-query
      ev_key := TG_TABLE_NAME || ':' || coalesce(full_row ->> key_cols[1], '');
    ELSE
      SELECT TG_TABLE_NAME || ':' || string_agg(coalesce(full_row ->> c, ''), ':' ORDER BY o)
        INTO ev_key FROM unnest(key_cols) WITH ORDINALITY AS k(c, o);
    END IF;
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

  -- A key made of the primary key needs no key lock: the row lock (or the
  -- unique index) already makes one row's producers commit one after another.
  IF ev_key IS NOT NULL AND TG_ARGV[4] IS DISTINCT FROM 'pk' THEN
    PERFORM pgrelay.lock_key(ev_key);
  END IF;
  INSERT INTO pgrelay.db_events (event_type, key, payload)
  VALUES (TG_ARGV[0] || '.' || lower(TG_OP), ev_key,
          jsonb_build_object('op', lower(TG_OP), 'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,
                             'new', new_row, 'old', old_row, 'changed', to_jsonb(changed)));
  RETURN NULL;
END
$fn$;

-- Installs the capture trigger on a table (replacing an earlier one).
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
  when_clause text;
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
  SELECT coalesce(array_agg(a.attname::text ORDER BY k.ord), '{}') INTO pk_columns
    FROM pg_index i
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
   WHERE i.indrelid = table_name AND i.indisprimary;
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

  EXECUTE format('DROP TRIGGER IF EXISTS pgrelay_capture ON %s', table_name);
  EXECUTE format('CREATE TRIGGER pgrelay_capture AFTER %s ON %s FOR EACH ROW EXECUTE FUNCTION pgrelay.capture(%L, %L, %L, %L, %L)',
                 array_to_string(ops, ' OR '), table_name, event_prefix, key_columns::text,
                 coalesce(include_columns::text, ''), coalesce(exclude_columns, '{}')::text,
                 CASE WHEN cardinality(key_columns) > 0 AND key_columns = pk_columns THEN 'pk' ELSE '' END);

  INSERT INTO pgrelay.tracked_tables (table_name, event_prefix, key_columns, include_columns, exclude_columns, operations)
  VALUES (table_name, event_prefix, key_columns, include_columns, coalesce(exclude_columns, '{}'), ops)
  ON CONFLICT ON CONSTRAINT tracked_tables_pkey DO UPDATE
    SET event_prefix = EXCLUDED.event_prefix, key_columns = EXCLUDED.key_columns,
        include_columns = EXCLUDED.include_columns, exclude_columns = EXCLUDED.exclude_columns,
        operations = EXCLUDED.operations, tracked_at = now();
END
$fn$;

-- Removes the capture trigger; events already written stay.
CREATE OR REPLACE FUNCTION pgrelay.untrack(table_name regclass) RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
  EXECUTE format('DROP TRIGGER IF EXISTS pgrelay_capture ON %s', table_name);
  DELETE FROM pgrelay.tracked_tables t WHERE t.table_name = untrack.table_name;
  RETURN FOUND;
END
$fn$;
