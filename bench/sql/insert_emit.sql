\set v random(1, 1000000)
WITH o AS (INSERT INTO bench_plain (v, note) VALUES (:v, 'order placed') RETURNING id, v)
SELECT pgrelay.emit('bench.emit', jsonb_build_object('id', o.id, 'v', o.v, 'note', 'order placed')) FROM o;
