\set v random(1, 1000000)
INSERT INTO pgrelay.db_events (event_type, payload) VALUES ('bench.emit', jsonb_build_object('v', :v::int, 'note', 'order placed'));
