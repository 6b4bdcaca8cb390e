"""Streaming replication on this machine: replay lag under an event load, reads on primary vs replica.

Set-up (untimed): a fresh database with BENCH_REPL_ITEMS items (default 20,000) in 100 categories,
10 semantic and 10 co-occurrence neighbours per item, popularity, and BENCH_REPL_USERS users
(default 2,000) with 10 events each; then one streaming hot standby, made as `pgrecs db replica
add` makes it (base backup, slot, own port).

1. Event load: BENCH_REPL_CLIENTS (default 50) client threads, each with its own connection, post
   single events through the loader the API's POST /events uses (pgrecs.ingest.ingest_records) for
   BENCH_REPL_SECONDS (default 15). Every 100 ms the primary's pg_stat_replication.replay_lag of the
   replica and the WAL bytes not yet replayed are sampled: p50/p95/max.
2. Reads: BENCH_REPL_READERS (default 4) threads call recs.recommend_for_user (k=10, placement
   home_for_you) for random users for BENCH_REPL_SECONDS, first all on the primary, then all on the
   replica, with no write load: reads/s and the CPU of that server's processes per read.

Two cores bound everything here: primary, replica and load generator share them, so the replica
cannot add capacity on this machine; the per-read CPU is what sizes replicas elsewhere.
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import time

import psutil
import psycopg

from benchmarks.run import WORK, bench_server, fresh_database

N_ITEMS = int(os.environ.get("BENCH_REPL_ITEMS", 20_000))
N_USERS = int(os.environ.get("BENCH_REPL_USERS", 2_000))
CLIENTS = int(os.environ.get("BENCH_REPL_CLIENTS", 50))
READERS = int(os.environ.get("BENCH_REPL_READERS", 4))
SECONDS = float(os.environ.get("BENCH_REPL_SECONDS", 15))
REPLICA = "bench"


def _populate(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "insert into pgrecs.items (tenant_id, external_id, title, brand, category_path, price, stock, active)"
            " select 'default', 'i' || g, 'Item ' || g, 'brand' || (g %% 50), array['c' || (g %% 100)],"
            " 10 + g %% 90, 5, true from generate_series(1, %s) g", (N_ITEMS,))
        # neighbours within the category, as the pipelines would publish them
        for signal, step in (("semantic", 7), ("cooccurrence", 13)):
            conn.execute(
                "insert into pgrecs.item_neighbors (tenant_id, signal, item_id, neighbor_item_id, score, rank)"
                " select 'default', %s, a.item_id, b.item_id, 1.0 - r * 0.05, r"
                " from pgrecs.items a cross join generate_series(1, 10) r"
                " join pgrecs.items b on b.external_id = 'i' || (1 + (substr(a.external_id, 2)::int - 1 + r * %s) %% %s)",
                (signal, step, N_ITEMS))
        conn.execute("insert into pgrecs.item_signals (tenant_id, item_id, popularity, trending, quality_score)"
                     " select 'default', item_id, random() * 100, random(), 1 from pgrecs.items")
        conn.execute("insert into pgrecs.users (tenant_id, external_id)"
                     " select 'default', 'u' || g from generate_series(1, %s) g", (N_USERS,))
        conn.execute(
            "insert into pgrecs.events (tenant_id, user_id, item_id, event_type, occurred_at, dedup_key)"
            " select 'default', u.user_id, 1 + (u.user_id * 37 + r * 101) %% %s, 'view',"
            " now() - r * interval '1 hour', gen_random_uuid()"
            " from pgrecs.users u cross join generate_series(1, 10) r", (N_ITEMS,))
        conn.execute("analyze")


def _server_cpu_s(data_dir) -> float:
    """CPU seconds of the postmaster of data_dir and all its children so far."""
    pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    total = 0.0
    postmaster = psutil.Process(pid)
    for process in [postmaster, *postmaster.children(recursive=True)]:
        try:
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _event_load(url: str, primary_url: str, slot: str) -> dict:
    from pgrecs.db import connect
    from pgrecs.ingest import ingest_records

    stop = threading.Event()
    counts = [0] * CLIENTS
    errors: list[str] = []

    def client(n: int) -> None:
        rng = random.Random(n)
        with connect(url) as conn:
            while not stop.is_set():
                event = {"user_id": f"u{rng.randint(1, N_USERS)}", "item_id": f"i{rng.randint(1, N_ITEMS)}",
                         "event_type": "view", "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                try:
                    ingest_records(conn, "events", [event], source="bench")
                    conn.commit()
                    counts[n] += 1
                except psycopg.Error as exc:
                    conn.rollback()
                    errors.append(str(exc).splitlines()[0])

    lag_s: list[float] = []
    lag_bytes: list[int] = []
    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # every client connected and running
    start_count = sum(counts)
    started = time.monotonic()
    with psycopg.connect(primary_url, autocommit=True) as monitor:
        while time.monotonic() - started < SECONDS:
            row = monitor.execute(
                "select extract(epoch from coalesce(replay_lag, interval '0'))::float8,"
                " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint"
                " from pg_stat_replication where application_name = %s", (slot,)).fetchone()
            if row is not None:
                lag_s.append(row[0])
                lag_bytes.append(row[1])
            time.sleep(0.1)
    elapsed = time.monotonic() - started
    events = sum(counts) - start_count
    stop.set()
    for thread in threads:
        thread.join()
    return {
        "clients": CLIENTS,
        "seconds": round(elapsed, 1),
        "events_per_s": round(events / elapsed, 1),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "samples": len(lag_s),
        "replay_lag_ms": {"p50": _ms(_pct(lag_s, 0.5)), "p95": _ms(_pct(lag_s, 0.95)), "max": _ms(max(lag_s, default=None))},
        "replay_lag_bytes": {"p50": _pct(lag_bytes, 0.5), "p95": _pct(lag_bytes, 0.95), "max": max(lag_bytes, default=None)},
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _reads(url: str, data_dir) -> dict:
    from pgrecs.db import connect

    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(READERS)]

    def reader(n: int) -> None:
        rng = random.Random(100 + n)
        with connect(url, autocommit=True) as conn:
            ids = [row[0] for row in conn.execute("select user_id from pgrecs.users").fetchall()]
            while not stop.is_set():
                t0 = time.perf_counter()
                conn.execute("select count(*) from recs.recommend_for_user(user_id => %s::bigint, k => 10,"
                             " placement => 'home_for_you')", (rng.choice(ids),), prepare=True).fetchone()
                latencies[n].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(READERS)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)  # warm-up: connections, plans, caches
    done_before = sum(len(x) for x in latencies)
    cpu_before, started = _server_cpu_s(data_dir), time.monotonic()
    time.sleep(SECONDS)
    elapsed, cpu_after = time.monotonic() - started, _server_cpu_s(data_dir)
    done = sum(len(x) for x in latencies) - done_before
    stop.set()
    for thread in threads:
        thread.join()
    timed = [x for per in latencies for x in per[len(per) // 4:]]
    return {
        "readers": READERS,
        "reads_per_s": round(done / elapsed, 1),
        "server_cpu_ms_per_read": round((cpu_after - cpu_before) * 1000 / max(done, 1), 3),
        "latency_ms_p50": round(statistics.median(timed) * 1000, 2),
        "latency_ms_p95": round(_pct(timed, 0.95) * 1000, 2),
    }


def run() -> dict:
    from pgrecs import replicas

    with bench_server() as server_url, fresh_database(server_url, "replication") as url:
        t0 = time.perf_counter()
        _populate(url)
        home = WORK
        replicas.remove(server_url, home, REPLICA)
        made, _ = replicas.add(server_url, home, REPLICA)
        setup_s = time.perf_counter() - t0
        try:
            replica_url = made.url(url)
            load = _event_load(url, server_url, made.slot)
            # let replay catch up, then measure reads with no write load
            with psycopg.connect(server_url) as primary:
                target = primary.execute("select pg_current_wal_insert_lsn()").fetchone()[0]
            with psycopg.connect(made.url(server_url), autocommit=True) as standby:
                while not standby.execute("select pg_last_wal_replay_lsn() >= %s", (target,)).fetchone()[0]:
                    time.sleep(0.05)
            primary_reads = _reads(url, WORK / "pgdata")
            replica_reads = _reads(replica_url, made.data_dir)
        finally:
            replicas.remove(server_url, home, REPLICA)
    return {
        "items": N_ITEMS,
        "users": N_USERS,
        "setup_seconds": round(setup_s, 1),
        "event_load": load,
        "reads_primary_alone": primary_reads,
        "reads_on_one_replica": replica_reads,
        "metric": "replay lag p95 under the event load",
        "value": load["replay_lag_ms"]["p95"],
        "unit": "ms",
        "note": (f"{CLIENTS} event clients, {load['events_per_s']} events/s; reads/s primary "
                 f"{primary_reads['reads_per_s']} vs replica {replica_reads['reads_per_s']} (2 shared cores)"),
    }
