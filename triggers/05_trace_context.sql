-- W3C trace context (https://www.w3.org/TR/trace-context/) from the producing
-- transaction to the event: a producer runs SET LOCAL pgrelay.traceparent = '00-...'
-- (and optionally pgrelay.tracestate), or passes them in emit()'s headers, and every
-- event the transaction writes keeps them in its headers, where deliveries find them.
-- Re-applied by `pgrelay migrate` whenever this file changes (CREATE OR REPLACE only).

-- A traceparent as the W3C spec reads one: version-traceid-parentid-flags in lower-case
-- hex, version ff and all-zero ids invalid; a later version may append '-' and more.
CREATE OR REPLACE FUNCTION pgrelay.valid_traceparent(v text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $fn$
  SELECT v ~ '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[!-~]*)?$'
     AND left(v, 2) <> 'ff'
     AND (left(v, 2) <> '00' OR length(v) = 55)
     AND substr(v, 4, 32) <> repeat('0', 32)
     AND substr(v, 37, 16) <> repeat('0', 16)
$fn$;

-- A tracestate: at most 512 characters, 1 to 32 comma-separated key=value members
-- (empty members allowed), keys lower-case, values printable ASCII without ',' or '='.
CREATE OR REPLACE FUNCTION pgrelay.valid_tracestate(v text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $fn$
  SELECT length(v) <= 512 AND v ~ '^[ -~\t]*$'
     AND (SELECT count(*) FILTER (WHERE m <> '') BETWEEN 1 AND 32
                 AND bool_and(m = '' OR m ~ '^[a-z0-9][a-z0-9_*/@-]{0,255}=[\x21-\x2b\x2d-\x3c\x3e-\x7e]([\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,254}[\x21-\x2b\x2d-\x3c\x3e-\x7e])?$')
            FROM (SELECT btrim(x, E' \t') AS m FROM unnest(string_to_array(v, ',')) x) members)
$fn$;

-- The headers an event is stored with: `headers` (emit()'s argument) carrying the trace
-- context, taken from `headers` when it names a traceparent, else from the transaction's
-- pgrelay.traceparent / pgrelay.tracestate settings. A malformed value is dropped with a
-- WARNING (a tracestate with it, as the spec asks): tracing never fails a producer.
-- The common case, no trace context anywhere, costs one current_setting() call.
CREATE OR REPLACE FUNCTION pgrelay.event_headers(headers jsonb DEFAULT '{}') RETURNS jsonb
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
  h jsonb := coalesce(headers, '{}');
  given boolean := jsonb_typeof(h) = 'object' AND (h ? 'traceparent' OR h ? 'tracestate');
  tp text;
  ts text;
BEGIN
  IF given THEN
    tp := h ->> 'traceparent';
    ts := h ->> 'tracestate';
    h := h - 'traceparent' - 'tracestate';
  ELSE
    tp := nullif(current_setting('pgrelay.traceparent', true), '');
    IF tp IS NULL THEN
      RETURN h;
    END IF;
    ts := nullif(current_setting('pgrelay.tracestate', true), '');
  END IF;
  IF tp IS NULL OR NOT pgrelay.valid_traceparent(tp) THEN
    RAISE WARNING 'pgrelay: traceparent % is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>); the event is stored without trace context',
      coalesce(quote_literal(left(tp, 100)), 'missing (a tracestate alone)');
    RETURN h;
  END IF;
  IF ts IS NOT NULL AND NOT pgrelay.valid_tracestate(ts) THEN
    RAISE WARNING 'pgrelay: tracestate % is not a W3C tracestate; the event keeps only its traceparent',
      quote_literal(left(ts, 100));
    ts := NULL;
  END IF;
  RETURN h || jsonb_build_object('traceparent', tp)
           || CASE WHEN ts IS NULL THEN '{}' ELSE jsonb_build_object('tracestate', ts) END;
END
$fn$;
