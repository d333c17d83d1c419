INSERT INTO bench_tracked (v, note) SELECT g, 'order placed' FROM generate_series(1, 1000) g;
