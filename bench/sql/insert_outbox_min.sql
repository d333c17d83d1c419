\set v random(1, 1000000)
WITH o AS (INSERT INTO bench_plain (v, note) VALUES (:v, 'order placed') RETURNING id)
INSERT INTO pgrelay.db_events (event_type, payload) SELECT 'bench.min', '{}' FROM o;
