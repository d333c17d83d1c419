\set v random(1, 1000000)
SELECT pgrelay.emit('bench.emit', jsonb_build_object('v', :v::int, 'note', 'order placed'));
