\set v random(1, 1000000)
INSERT INTO bench_plain (v, note) VALUES (:v, 'order placed');
