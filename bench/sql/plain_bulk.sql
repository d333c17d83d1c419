INSERT INTO bench_plain (v, note) SELECT g, 'order placed' FROM generate_series(1, 1000) g;
