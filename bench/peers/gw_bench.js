// Graphile Worker, side by side with pgrelay (driven by bench/run).
//   node gw_bench.js drain   --db URL --jobs N --concurrency C [--batched]
//   node gw_bench.js latency --db URL --rate R --seconds S --concurrency C
// Each prints one JSON object on stdout. "batched" turns on Graphile Worker's
// own batching (localQueue + completeJobBatchDelay), its fastest documented mode.
"use strict";
const { run, runMigrations } = require("graphile-worker");
const { Pool } = require("pg");
const { fork } = require("child_process");
const { performance } = require("perf_hooks");

function flags(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith("--")) continue;
    const k = argv[i].slice(2);
    if (i + 1 < argv.length && !argv[i + 1].startsWith("--")) out[k] = argv[++i];
    else out[k] = true;
  }
  return out;
}
const nowMs = () => performance.timeOrigin + performance.now(); // wall clock, sub-ms
// Graphile logs every completed job at info level: keep errors only.
const { Logger } = require("graphile-worker");
const logger = new Logger(() => (level, message) => {
  if (level === "error") process.stderr.write(`gw: ${message}\n`);
});
function workerPreset(f) {
  const concurrency = Number(f.concurrency || 16);
  const worker = { concurrentJobs: concurrency, maxPoolSize: concurrency + 4, pollInterval: 2000 };
  if (f.batched) {
    worker.localQueue = { size: 256 };
    worker.completeJobBatchDelay = 0;
  }
  return { worker };
}

async function prepare(db) {
  await runMigrations({ connectionString: db, logger });
  const pool = new Pool({ connectionString: db, max: 4 });
  await pool.query("DELETE FROM graphile_worker._private_jobs");
  await pool.query("VACUUM ANALYZE graphile_worker._private_jobs");
  return pool;
}

async function drain(f) {
  const n = Number(f.jobs);
  const pool = await prepare(f.db);
  // Bulk insert through Graphile's own add_jobs(), in chunks.
  for (let done = 0; done < n; done += 10000) {
    const k = Math.min(10000, n - done);
    await pool.query(
      `SELECT count(*) FROM graphile_worker.add_jobs(
         array(SELECT row('noop', json_build_object('n', g), null, null, null, null, null, null)::graphile_worker.job_spec
                 FROM generate_series($1::int, $2::int) g))`,
      [done + 1, done + k]
    );
  }
  await pool.query("VACUUM ANALYZE graphile_worker._private_jobs");
  let completed = 0;
  let resolveDone;
  const allDone = new Promise((r) => (resolveDone = r));
  const t0 = nowMs();
  const runner = await run({
    connectionString: f.db,
    noHandleSignals: true,
    logger,
    preset: workerPreset(f),
    taskList: {
      noop: async () => {
        if (++completed >= n) resolveDone();
      },
    },
  });
  await allDone;
  await runner.stop();
  const seconds = (nowMs() - t0) / 1000;
  const left = Number((await pool.query("SELECT count(*) FROM graphile_worker._private_jobs")).rows[0].count);
  await pool.end();
  return { jobs: n, seconds, jobs_per_s: n / seconds, left, concurrency: Number(f.concurrency || 16), batched: !!f.batched };
}

// Producer child: adds one job per call at a steady rate, reports seq -> add-returned time.
async function produce(f) {
  const rate = Number(f.rate), seconds = Number(f.seconds), conns = Number(f.conns || 2);
  const total = Math.floor(rate * seconds);
  const pool = new Pool({ connectionString: f.db, max: conns });
  const added = new Array(total);
  const start = nowMs() + 50;
  let next = 0;
  let maxLag = 0;
  async function lane() {
    for (;;) {
      const i = next++;
      if (i >= total) return;
      const due = start + (i * 1000) / rate;
      const wait = due - nowMs();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      maxLag = Math.max(maxLag, nowMs() - due);
      await pool.query("SELECT graphile_worker.add_job('lat', json_build_object('seq', $1::int))", [i]);
      added[i] = nowMs();
    }
  }
  await Promise.all(Array.from({ length: conns }, lane));
  await pool.end();
  return { added, max_lag_ms: maxLag, seconds: (nowMs() - start) / 1000 };
}

function pct(sorted, p) {
  if (!sorted.length) return 0;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1];
}

async function latency(f) {
  const pool = await prepare(f.db);
  await pool.end();
  const started = new Map();
  const runner = await run({
    connectionString: f.db,
    noHandleSignals: true,
    logger,
    preset: workerPreset(f),
    taskList: {
      lat: async (payload) => {
        started.set(payload.seq, nowMs());
      },
    },
  });
  await new Promise((r) => setTimeout(r, 500));
  const child = fork(__filename, ["produce", ...process.argv.slice(3)], { stdio: ["ignore", "ignore", "inherit", "ipc"] });
  const prod = await new Promise((resolve, reject) => {
    child.on("message", resolve);
    child.on("exit", (code) => code && reject(new Error(`producer exited ${code}`)));
  });
  const total = prod.added.length;
  const until = nowMs() + 30000;
  while (started.size < total && nowMs() < until) await new Promise((r) => setTimeout(r, 10));
  await runner.stop();
  const warmupMs = Number(f["warmup-ms"] || 500);
  const first = prod.added[0];
  const lat = [];
  for (let i = 0; i < total; i++) {
    if (!started.has(i) || prod.added[i] < first + warmupMs) continue;
    lat.push(started.get(i) - prod.added[i]);
  }
  lat.sort((a, b) => a - b);
  return {
    rate: Number(f.rate), events: lat.length, missing: total - started.size,
    p50_ms: pct(lat, 50), p90_ms: pct(lat, 90), p99_ms: pct(lat, 99), max_ms: lat[lat.length - 1] || 0,
    producer: { events: total, seconds: prod.seconds, rate: total / prod.seconds, max_lag_ms: prod.max_lag_ms },
  };
}

(async () => {
  const cmd = process.argv[2];
  const f = flags(process.argv.slice(3));
  try {
    if (cmd === "produce") {
      process.send(await produce(f));
      return;
    }
    const out = cmd === "drain" ? await drain(f) : cmd === "latency" ? await latency(f) : null;
    if (!out) throw new Error("usage: gw_bench.js drain|latency ...");
    process.stdout.write(JSON.stringify(out) + "\n");
    process.exit(0);
  } catch (e) {
    process.stderr.write(`gw_bench: ${e.stack || e}\n`);
    process.exit(1);
  }
})();
