#!/usr/bin/env python3
"""Turns bench/run's results.jsonl into the printed table and the JSON summary.

Repeated measurements are summarised by their median. Every figure carries its
ratio against a baseline measured in the same run, and the issue's target."""
import json
import statistics
import sys


def load(path):
    out = {}
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        out.setdefault(rec["section"], []).append(rec["data"])
    return out


def med(rows, key):
    vals = [r[key] for r in rows if isinstance(r, dict) and key in r]
    return statistics.median(vals) if vals else None


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if abs(v) >= 100:
        s = f"{v:,.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.2f}"
    return s + (" " + unit if unit else "")


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def main():
    args = sys.argv[1:]
    path = args[0]
    json_out = args[args.index("--json") + 1] if "--json" in args else None
    r = load(path)
    rows = []  # (section, figure, value, unit, ratio, baseline name, target)
    summary = {"figures": []}

    meta = (r.get("meta") or [{}])[0]
    ran = set(meta.get("sections", "raw drain latency producer webhook memory peer").split())

    def add(section, name, value, unit, rat=None, base="", target="", key=None):
        if SECTION_OF.get(section) not in ran:
            return  # not run (bench/run --only)
        rows.append((section, name, value, unit, rat, base, target))
        summary["figures"].append({"section": section, "figure": name, "key": key or name, "value": value,
                                   "unit": unit, "ratio": rat, "baseline": base, "target": target})

    summary["meta"] = meta
    summary["meta_end"] = (r.get("meta_end") or [{}])[0]

    # 1. physical limit
    raw = r.get("raw", [])
    def raw_rate(variant, workers):
        return med([x for x in raw if x.get("variant") == variant and x.get("workers") == workers], "rows_per_s")
    base_del1 = raw_rate("delete", 1)
    base_del2 = raw_rate("delete", 2)
    lease1 = raw_rate("lease", 1)
    lease2 = raw_rate("lease", 2)
    add("1 limit", "raw DELETE ... SKIP LOCKED, 1 conn", base_del1, "rows/s", 1.0 if base_del1 else None, "itself",
        key="raw_delete_1")
    add("1 limit", "raw UPDATE to done, 1 conn", raw_rate("update", 1), "rows/s", ratio(raw_rate("update", 1), base_del1),
        "raw DELETE 1", key="raw_update_1")
    add("1 limit", "raw lease (UPDATE claim + DELETE), 1 conn", lease1, "rows/s", ratio(lease1, base_del1), "raw DELETE 1",
        key="raw_lease_1")
    add("1 limit", "raw DELETE, 2 conns", base_del2, "rows/s", ratio(base_del2, base_del1), "raw DELETE 1",
        key="raw_delete_2")
    tx1 = raw_rate("txclaim", 1)
    add("1 limit", "raw transactional claim (SELECT FOR UPDATE + DELETE in a tx), 1 conn", tx1, "rows/s",
        ratio(tx1, base_del1), "raw DELETE 1", key="raw_txclaim_1")
    add("1 limit", "raw lease, 2 conns", lease2, "rows/s", ratio(lease2, base_del1), "raw DELETE 1", key="raw_lease_2")

    # 2. drain
    drain = r.get("drain", [])
    lease_rows = [x for x in drain if x.get("claim", "lease") == "lease" and x.get("attempts", "on") == "on"]
    tx_rows = [x for x in drain if x.get("claim") == "transaction"]
    d1 = med([x for x in lease_rows if x.get("relays") == 1], "events_per_s")
    d2 = med([x for x in lease_rows if x.get("relays") == 2], "events_per_s")
    t1 = med([x for x in tx_rows if x.get("relays") == 1], "events_per_s")
    t2 = med([x for x in tx_rows if x.get("relays") == 2], "events_per_s")
    add("2 drain", "pgrelay, 1 relay, no-op handler", d1, "events/s", ratio(d1, base_del1), "raw DELETE 1", ">= 0.8",
        key="drain_1")
    add("2 drain", "  same, vs the lease limit", d1, "events/s", ratio(d1, lease1), "raw lease 1", key="drain_1_vs_lease")
    add("2 drain", "pgrelay, 2 relays", d2, "events/s", ratio(d2, base_del2), "raw DELETE 2", ">= 0.8", key="drain_2")
    add("2 drain", "  same, vs the lease limit", d2, "events/s", ratio(d2, lease2), "raw lease 2", key="drain_2_vs_lease")
    # The attempt log: on and off back to back in pairs; the median of the pairs' ratios.
    pairs = r.get("attempt_pair", [])
    for n in (1, 2):
        by_pair = {}
        for x in pairs:
            if x["drain"].get("relays") == n:
                by_pair.setdefault(x["pair"], {})[x["drain"].get("attempts")] = x["drain"]["events_per_s"]
        ratios = [p["on"] / p["off"] for p in by_pair.values() if p.get("on") and p.get("off")]
        if ratios:
            on = statistics.median([p["on"] for p in by_pair.values() if "on" in p])
            add("2 drain", f"  {n} relay{'s' if n > 1 else ''} with the attempt log vs without ({len(ratios)} pairs)",
                on, "events/s", statistics.median(ratios), "attempts off, same pair", ">= 0.9",
                key=f"drain_{n}_attempts")
    add("2 drain", "pgrelay, 1 relay, relay.claim=transaction", t1, "events/s", ratio(t1, base_del1), "raw DELETE 1",
        ">= 0.8", key="drain_tx_1")
    add("2 drain", "pgrelay, 2 relays, relay.claim=transaction", t2, "events/s", ratio(t2, base_del2), "raw DELETE 2",
        ">= 0.8", key="drain_tx_2")

    # 4 first, for the round-trip baseline used by 3.
    prod = r.get("producer", [])
    def tps(script, wake, clients):
        return med([x for x in prod if x["script"] == script and x["wake"] == wake and x["clients"] == clients], "tps")
    emit_rt_ms = (1000.0 / tps("emit", "notify", 1)) if tps("emit", "notify", 1) else None

    # 3. latency
    lat = r.get("latency", [])
    for rate in (1000, 5000):
        x = next((l for l in lat if l.get("rate") == rate), None)
        if not x:
            add("3 latency", f"commit->handler at {rate}/s", None, "ms")
            continue
        tgt = {"p50_ms": "<= 1 ms", "p99_ms": "<= 5 ms"} if rate == 1000 else {}
        for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
            add("3 latency", f"commit->handler {k[:-3]} at {rate}/s (got {fmt(x['producer']['rate'])}/s)", x[k], "ms",
                ratio(x[k], emit_rt_ms), "one emit() round trip", tgt.get(k, ""), key=f"latency_{rate}_{k}")

    mixed = next(iter(r.get("latency_mixed", [])), None)
    if not mixed:
        add("3 latency", "mixed load: keyed vs unkeyed commit->handler p99", None, "ms")
    else:
        got = f"{fmt(mixed['producer']['rate'])}/s, {mixed['relays']} relays"
        for part in ("unkeyed", "keyed"):
            add("3 latency", f"mixed load p99, {part} (got {got})", mixed[part]["p99_ms"], "ms",
                key=f"latency_mixed_{part}_p99_ms")
        add("3 latency", "mixed load: keyed p99 / unkeyed p99", mixed["keyed_p99_ratio"], "x",
            mixed["keyed_p99_ratio"], "unkeyed p99", "<= 3", key="latency_mixed_keyed_p99_ratio")

    # 4. producer overhead
    for clients in (1, 4):
        plain = tps("plain", "notify", clients)
        add("4 producer", f"plain INSERT, {clients} client(s)", plain, "tx/s", 1.0 if plain else None, "itself",
            key=f"producer_plain_{clients}")
        v = tps("outbox_insert", "poll", clients)
        add("4 producer", f"  (diagnostic) bare INSERT into pgrelay.db_events, no wake, {clients} client(s)", v, "tx/s",
            ratio(v, plain), "plain INSERT", key=f"producer_outbox_insert_{clients}")
        v = tps("insert_outbox_min", "poll", clients)
        add("4 producer", f"  (diagnostic) INSERT + minimal db_events row, one statement, no trigger, {clients} client(s)",
            v, "tx/s", ratio(v, plain), "plain INSERT", key=f"producer_insert_outbox_min_{clients}")
        for script, label in (("tracked", "INSERT + track() trigger"), ("emit", "emit()"),
                              ("insert_emit", "INSERT + emit() in one statement")):
            for wake in ("notify", "poll"):
                v = tps(script, wake, clients)
                add("4 producer", f"{label}, wake={wake}, {clients} client(s)", v, "tx/s", ratio(v, plain),
                    "plain INSERT", "cost <= 1.5x" if wake == "notify" else "",
                    key=f"producer_{script}_{wake}_{clients}")
    plain_bulk, tracked_bulk = tps("plain_bulk", "poll", 1), tps("tracked_bulk", "poll", 1)
    add("4 producer", "1,000-row INSERT ... SELECT into a tracked table, wake=poll, 1 client",
        tracked_bulk * 1000 if tracked_bulk else None, "rows/s", ratio(tracked_bulk, plain_bulk),
        "same into plain table", key="producer_tracked_bulk_1")
    if prod:
        summary["producer_cost_note"] = "cost = 1 / ratio: a ratio of 0.67 is a 1.5x cost"

    # 5. webhook
    hooks = r.get("webhook") or [{}]
    hook = next((x for x in hooks if x.get("attempts", "on") == "on"), hooks[0])
    if hook.get("status") == "ok":
        on_rate = med([x for x in hooks if x.get("attempts", "on") == "on" and x.get("status") == "ok"], "per_s")
        add("5 webhook", "webhook deliveries to a local keep-alive sink", on_rate, "deliveries/s",
            ratio(on_rate, d1), "no-op drain, 1 relay", key="webhook")
        by_pair = {}
        for x in hooks:
            if x.get("status") == "ok" and "pair" in x:
                by_pair.setdefault(x["pair"], {})[x["attempts"]] = x["per_s"]
        ratios = [p["on"] / p["off"] for p in by_pair.values() if p.get("on") and p.get("off")]
        if ratios:
            add("5 webhook", f"  with the attempt log vs without ({len(ratios)} pairs)", on_rate, "deliveries/s",
                statistics.median(ratios), "attempts off, same pair", ">= 0.9", key="webhook_attempts")
    else:
        add("5 webhook", "webhook deliveries", f"n/a ({hook.get('reason', 'not run')})", "", key="webhook")

    # 6. memory
    mem = (r.get("memory") or [{}])[0]
    if mem.get("idle_kb"):
        idle = mem["idle_kb"] / 1024
        for k, label in (("idle_kb", "idle, before the backlog"), ("at_10pct_kb", "10% drained"), ("mid_kb", "50% drained"),
                         ("at_90pct_kb", "90% drained"), ("end_kb", "drained"), ("peak_kb", "peak (VmHWM)")):
            add("6 memory", f"pgrelay run RSS, {mem['events']:,} events: {label}", mem[k] / 1024, "MiB",
                ratio(mem[k] / 1024, idle), "idle RSS", "<= 30 MB, flat", key=f"memory_{k}")
        add("6 memory", "  its drain rate (stdout handler to /dev/null)", mem["events_per_s"], "events/s",
            ratio(mem["events_per_s"], d1), "no-op drain, 1 relay", key="memory_drain_rate")
    else:
        add("6 memory", "pgrelay run RSS", None, "MiB", key="memory")

    # 7. peer
    pd = r.get("peer_drain", [])
    peer_pg = r.get("peer_pgrelay", [])
    pg_same = med([x for x in peer_pg if x.get("claim", "lease") == "lease"], "events_per_s")
    pg_tx = med([x for x in peer_pg if x.get("claim") == "transaction"], "events_per_s")
    if pd or r.get("peer"):
        note = (r.get("peer") or [{}])[0]
        if note.get("status") == "n/a":
            add("7 peer", "Graphile Worker", f"n/a ({note['reason']})", "", key="peer")
        else:
            version = next((x.get("version") for x in pd if x.get("version")), "?")
            add("7 peer", f"pgrelay, 1 relay, {summary_n(pd)} events", pg_same, "events/s", 1.0 if pg_same else None,
                "itself", key="peer_pgrelay")
            add("7 peer", f"pgrelay, 1 relay, relay.claim=transaction, {summary_n(pd)} events", pg_tx, "events/s",
                ratio(pg_tx, pg_same), "pgrelay lease", key="peer_pgrelay_tx")
            for mode in ("default", "batched"):
                v = med([x for x in pd if x.get("mode") == mode], "jobs_per_s")
                add("7 peer", f"Graphile Worker {version} ({mode}, concurrency 16)", v, "jobs/s", ratio(pg_same, v),
                    "pgrelay lease / GW", ">= 3" if mode == "default" else "", key=f"peer_gw_{mode}")
                add("7 peer", f"  same, vs pgrelay with relay.claim=transaction", v, "jobs/s", ratio(pg_tx, v),
                    "pgrelay tx / GW", ">= 3" if mode == "default" else "", key=f"peer_gw_{mode}_vs_tx")
            pl = r.get("peer_latency", [])
            ours = next((l for l in lat if l.get("rate") == 1000), None)
            for mode in ("default", "batched"):
                x = next((l for l in pl if l.get("mode") == mode and "p50_ms" in l), None)
                for k in ("p50_ms", "p99_ms"):
                    v = x[k] if x else None
                    add("7 peer", f"Graphile Worker add->start {k[:-3]} at 1000/s ({mode})", v, "ms",
                        ratio(ours[k] if ours else None, v), "pgrelay / GW (<1: ours lower)",
                        key=f"peer_latency_{mode}_{k}")
    else:
        add("7 peer", "Graphile Worker", None, "", key="peer")

    # 8. wake modes
    wake_table = wake_modes(r, add) if "wake" in ran else None
    if wake_table:
        summary["wake_modes"] = wake_table

    # 9. backlog shapes (the drain beside each waiting shape) and one key alone
    shape_best = {}
    for x in r.get("shapes", []):
        shape_best[x["shape"]] = max(shape_best.get(x["shape"], 0), x["drain"]["events_per_s"])
    plain = shape_best.get("plain")
    for shape, v in shape_best.items():
        add("9 shapes", f"drain of 20,000 over 2,000 keys beside {shape}", v, "events/s",
            ratio(plain, v) if shape != "plain" else 1.0, "plain / this (slowdown)", "<= 1.5" if shape != "plain" else "",
            key=f"shape_{shape}")
    for x in r.get("one_key", []):
        add("9 shapes", f"one key alone, {x['handler']} handler", x["drain"]["events_per_s"], "events/s", None, "",
            ">= 5000/s" if x["handler"] == "noop" else ">= 600/s", key=f"one_key_{x['handler']}")

    # 10. behind PgBouncer
    pooled_best = {}
    for x in r.get("pooler", []):
        k = (x["drain"]["claim"], x["route"])
        pooled_best[k] = max(pooled_best.get(k, 0), x["drain"]["events_per_s"])
    for claim in ("lease", "transaction"):
        direct, pooled = pooled_best.get((claim, "direct")), pooled_best.get((claim, "pooled"))
        if direct:
            add("10 pooler", f"drain through PgBouncer (transaction mode), claim={claim}", pooled, "events/s",
                ratio(pooled, direct), "direct drain", key=f"pooler_{claim}")

    errors = [(k[:-6], v[0]["error"]) for k, v in r.items() if k.endswith("_error")]
    summary["errors"] = [{"section": s, "error": e} for s, e in errors]

    # print
    m = meta.get("machine", {})
    s = meta.get("pg_settings", {})
    print(f"\npgrelay benchmarks ({meta.get('mode', '?')}, commit {meta.get('commit', '?')}, {meta.get('stamp', '')})")
    print(f"machine: {m.get('cpus')} CPUs ({m.get('cpu')}), {m.get('mem_mib')} MiB, kernel {m.get('kernel')}, "
          f"load at start {' '.join(m.get('loadavg_at_start', []))}, at end {summary['meta_end'].get('loadavg_at_end', '?')}")
    print("PostgreSQL: " + ", ".join(f"{k}={v}" for k, v in sorted(s.items())))
    print(f"batch size {meta.get('batch_size')}, run took {summary['meta_end'].get('seconds', '?')} s\n")
    w = max([len(x[1]) for x in rows] or [10]) + 2
    print(f"{'':10} {'figure':{w}} {'value':>18}  {'ratio':>7}  {'baseline':22} target")
    last = None
    for sec, name, v, unit, rat, base, tgt in rows:
        if sec != last:
            print()
            last = sec
        val = fmt(v, unit) if not isinstance(v, str) else v
        print(f"{sec:10} {name:{w}} {val:>18}  {fmt(rat) if rat is not None else '':>7}  {base:22} {tgt}")
    if wake_table:
        print_wake_table(wake_table)
    for sec, e in errors:
        print(f"\nerror in section {sec}: {e}")
    print()
    if json_out:
        with open(json_out, "w") as fp:
            json.dump(summary, fp, indent=2)
        print(f"wrote {json_out}")


ALL_SECTIONS = "raw drain latency producer webhook memory peer wake shapes pooler"
SECTION_OF = {"1 limit": "raw", "2 drain": "drain", "3 latency": "latency", "4 producer": "producer",
              "5 webhook": "webhook", "6 memory": "memory", "7 peer": "peer", "8 wake": "wake", "9 shapes": "shapes",
              "10 pooler": "pooler"}
WAKE_MODES = ("notify", "poll", "wal")
WAL_NOT_WIRED = "wal: not wired yet"


def wal_wired(x):
    """A wal latency record is real only if the relay was seen streaming from its slot."""
    return x.get("wal_slot") is True


def wake_modes(r, add):
    """Section 8: producer throughput per wake mode as a ratio to plain INSERT (per
    repetition, then the median), and commit->handler latency at 1,000/s per mode."""
    prod = r.get("wake_producer", [])
    lat = r.get("wake_latency", [])
    idle = r.get("wake_idle", [])
    table = {}

    def paired(mode, clients, relay=False):
        """Median tps and median of per-repetition ratios to that repetition's plain INSERT."""
        tps, ratios = [], []
        for x in prod:
            if x["script"] != "tracked" or x["wake"] != mode or x["clients"] != clients or x.get("relay", False) != relay:
                continue
            tps.append(x["tps"])
            plain = next((p["tps"] for p in prod if p["script"] == "plain" and p["clients"] == clients
                          and p.get("rep") == x.get("rep")), None)
            if plain:
                ratios.append(x["tps"] / plain)
        return (statistics.median(tps) if tps else None, statistics.median(ratios) if ratios else None)

    for clients in (1, 4):
        plain = med([p for p in prod if p["script"] == "plain" and p["clients"] == clients], "tps")
        add("8 wake", f"plain INSERT, {clients} client(s)", plain, "tx/s", 1.0 if plain else None, "itself",
            key=f"wake_plain_{clients}")
        for mode in WAKE_MODES:
            v, rat = paired(mode, clients)
            tgt = ">= 0.85 (poll or wal)" if clients == 4 and mode != "notify" else ""
            add("8 wake", f"INSERT into a tracked table, trigger wake={mode}, {clients} client(s)", v, "tx/s", rat,
                "plain INSERT", tgt, key=f"wake_producer_{mode}_{clients}")
            table.setdefault(mode, {})[f"producer_ratio_{clients}"] = rat
            table[mode][f"producer_tps_{clients}"] = v
        table.setdefault("plain", {})[f"producer_tps_{clients}"] = plain
    for mode in WAKE_MODES:
        v, rat = paired(mode, 4, relay=True)
        if v is None:
            continue
        unwired = mode == "wal" and not any(x.get("wal_slot") for x in prod if x.get("relay") and x["wake"] == "wal")
        add("8 wake", f"  (diagnostic) same, 4 clients, a wake={mode} relay draining alongside",
            WAL_NOT_WIRED if unwired else v, "tx/s", None if unwired else rat, "plain INSERT",
            key=f"wake_producer_{mode}_4_relay")
        table[mode]["producer_ratio_4_with_relay"] = None if unwired else rat
    emit_like = None
    for mode in WAKE_MODES:
        x = next((l for l in lat if l.get("wake") == mode), None)
        got = f" (got {fmt(x['producer']['rate'])}/s)" if x and x.get("producer") else ""
        for k in ("p50_ms", "p99_ms"):
            if x and mode == "wal" and not wal_wired(x):
                add("8 wake", f"commit->handler {k[:-3]} at 1000/s, wake={mode}", WAL_NOT_WIRED, "",
                    key=f"wake_latency_{mode}_{k}")
                table.setdefault(mode, {})[f"latency_{k}"] = None
                table[mode]["latency_note"] = (f"{WAL_NOT_WIRED} (no pgrelay_wake_* slot streamed; measured "
                                               f"p50 {fmt(x['p50_ms'])} ms, p99 {fmt(x['p99_ms'])} ms, "
                                               f"poll_interval_ms {x.get('poll_interval_ms')})")
                continue
            add("8 wake", f"commit->handler {k[:-3]} at 1000/s, wake={mode}{got}", x[k] if x else None, "ms", None, "",
                "<= 10 ms" if k == "p99_ms" else "", key=f"wake_latency_{mode}_{k}")
            table.setdefault(mode, {})[f"latency_{k}"] = x[k] if x else None
    for x in idle:
        add("8 wake", f"idle claims per second, wake={x['wake']} (nothing to do)", x["claims_per_s"], "claims/s",
            key=f"wake_idle_{x['wake']}")
        table.setdefault(x["wake"], {})["idle_claims_per_s"] = x["claims_per_s"]
    # Targets, as booleans (None: not measured).
    best4 = [table.get(m, {}).get("producer_ratio_4") for m in ("poll", "wal")]
    best4 = [v for v in best4 if v is not None]
    table["targets"] = {
        "producer_poll_or_wal_4_clients_ge_0.85": (max(best4) >= 0.85) if best4 else None,
        "latency_p99_le_10ms": {m: (table.get(m, {}).get("latency_p99_ms") <= 10
                                    if table.get(m, {}).get("latency_p99_ms") is not None else None)
                                for m in WAKE_MODES},
    }
    return table


def print_wake_table(t):
    print("wake modes (issue 8): tracked-table INSERT throughput / plain INSERT (same run), "
          "commit->handler latency at 1,000 events/s")
    print(f"  {'mode':8} {'1 client':>9} {'4 clients':>10} {'4 + relay':>10} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'idle claims/s':>14}")
    for m in WAKE_MODES:
        x = t.get(m, {})
        lat = ((f"{fmt(x.get('latency_p50_ms')):>8} {fmt(x.get('latency_p99_ms')):>8}")
               if x.get("latency_p99_ms") is not None or "latency_note" not in x else f"{WAL_NOT_WIRED:>17}")
        print(f"  {m:8} {fmt(x.get('producer_ratio_1')):>9} {fmt(x.get('producer_ratio_4')):>10} "
              f"{fmt(x.get('producer_ratio_4_with_relay')):>10} {lat} {fmt(x.get('idle_claims_per_s')):>14}")
    tg = t["targets"]
    v = tg["producer_poll_or_wal_4_clients_ge_0.85"]
    print(f"  target: poll or wal at 4 clients >= 0.85x plain: {'n/a' if v is None else ('met' if v else 'MISSED')}")
    for m, ok in tg["latency_p99_le_10ms"].items():
        print(f"  target: p99 <= 10 ms, {m}: {'n/a' if ok is None else ('met' if ok else 'MISSED')}")
    print()


def summary_n(pd):
    n = [x.get("jobs") for x in pd if x.get("jobs")]
    return f"{n[0]:,}" if n else "?"


if __name__ == "__main__":
    main()
