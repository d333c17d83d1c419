\set v random(1, 1000000)
BEGIN;
INSERT INTO bench_plain (v, note) VALUES (:v, 'order placed');
SELECT pgrelay.emit('bench.emit', jsonb_build_object('v', :v::int, 'note', 'order placed'));
COMMIT;
