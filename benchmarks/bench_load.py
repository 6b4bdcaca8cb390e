"""Load 1,000,000 events end to end through `pgrecs load events` (validation on).

Events are generated from the UCI Online Retail distributions: users, items and purchase times
are drawn with the frequencies of the real invoices; event types follow a view > click >
add_to_cart > purchase funnel; 0.1 % of rows are deliberately bad (unknown item, unparseable
time, bad value) so the reject path is exercised. The timed path is the CLI command itself,
in-process: parsing, COPY, validation, rejects and merge, on a fresh database (items loaded
first, untimed). The baseline is a bare COPY of the same CSV into an unlogged text table.

Environment: PGRECS_BENCH_EVENTS (default 1000000), PGRECS_BENCH_RUNS (default 3).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import os
import sys
import time
from collections import Counter
from pathlib import Path

from benchmarks.run import WORK, bench_server, fresh_database, median

UCI = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "uci-online-retail" / "online_retail.csv.gz"
SEED = 20261125
GENERATOR_VERSION = 1
EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")
EVENT_PROBS = (0.70, 0.15, 0.10, 0.05)


def _read_uci(path: Path):
    items: dict[str, tuple[str, str]] = {}
    item_freq: Counter = Counter()
    user_freq: Counter = Counter()
    times: list[float] = []
    with gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="") as f:
        for row in csv.DictReader(f):
            code = row["StockCode"].strip()
            if not code:
                continue
            items.setdefault(code, (row["Description"].strip(), row["UnitPrice"].strip()))
            item_freq[code] += 1
            if row["CustomerID"].strip():
                user_freq[row["CustomerID"].strip()] += 1
            times.append(dt.datetime.fromisoformat(row["InvoiceDate"]).replace(tzinfo=dt.timezone.utc).timestamp())
    return items, item_freq, user_freq, times


def generate(n_events: int, directory: Path) -> tuple[Path, Path]:
    """Write items.csv and events.csv (cached by size, seed and generator version)."""
    import numpy as np

    directory.mkdir(parents=True, exist_ok=True)
    items_path = directory / f"items_v{GENERATOR_VERSION}.csv"
    events_path = directory / f"events_{n_events}_v{GENERATOR_VERSION}.csv"
    if items_path.exists() and events_path.exists():
        return items_path, events_path
    items, item_freq, user_freq, times = _read_uci(UCI)
    rng = np.random.default_rng(SEED)
    codes = np.array(list(item_freq))
    p_items = np.array([item_freq[c] for c in codes], dtype=float)
    p_items /= p_items.sum()
    users = np.array(list(user_freq))
    p_users = np.array([user_freq[u] for u in users], dtype=float)
    p_users /= p_users.sum()
    times_arr = np.array(times)

    with open(items_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["external_id", "title", "price", "currency"])
        for code, (title, price) in items.items():
            w.writerow([code, title, price if price and not price.startswith("-") else "", "GBP"])

    item_idx = rng.choice(len(codes), size=n_events, p=p_items)
    user_idx = rng.choice(len(users), size=n_events, p=p_users)
    ts = rng.choice(times_arr, size=n_events) + rng.integers(0, 3600, size=n_events)
    kinds = rng.choice(len(EVENT_TYPES), size=n_events, p=EVENT_PROBS)
    qty = rng.geometric(0.3, size=n_events)
    bad = rng.random(n_events) < 0.001
    with open(events_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "event_type", "value", "occurred_at", "session_id"])
        for i in range(n_events):
            user = users[user_idx[i]]
            t = dt.datetime.fromtimestamp(float(ts[i]), dt.timezone.utc)
            kind = EVENT_TYPES[kinds[i]]
            row = [user, codes[item_idx[i]], kind, str(qty[i]) if kind == "purchase" else "",
                   t.strftime("%Y-%m-%dT%H:%M:%SZ"), f"{user}-{t:%Y%m%d}"]
            if bad[i]:
                row[(1, 4, 3)[i % 3]] = ("NO-SUCH-ITEM", "yesterday-ish", "many")[i % 3]
            w.writerow(row)
    return items_path, events_path


def _cli(url: str, *args: str) -> float:
    from pgrecs.cli import main

    started = time.perf_counter()
    out = io.StringIO()
    real_stdout, sys.stdout = sys.stdout, out
    try:
        main.main(["--db-url", url, *args], standalone_mode=False)
    finally:
        sys.stdout = real_stdout
    elapsed = time.perf_counter() - started
    print(out.getvalue().rstrip(), file=sys.stderr)
    return elapsed


def _bare_copy(url: str, events_path: Path) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create unlogged table bare_events (user_id text, item_id text, event_type text, value text,"
                     " occurred_at text, session_id text)")
        started = time.perf_counter()
        with conn.cursor() as cur, open(events_path, "rb") as f:
            with cur.copy("copy bare_events from stdin (format csv, header true)") as copy:
                while chunk := f.read(1 << 20):
                    copy.write(chunk)
        elapsed = time.perf_counter() - started
        conn.execute("drop table bare_events")
    return elapsed


def run() -> dict:
    import psycopg

    n_events = int(os.environ.get("PGRECS_BENCH_EVENTS", "1000000"))
    runs = int(os.environ.get("PGRECS_BENCH_RUNS", "3"))
    t0 = time.perf_counter()
    items_path, events_path = generate(n_events, WORK / "data")
    generate_s = time.perf_counter() - t0
    load_s, copy_s, items_s, checks = [], [], [], []
    with bench_server() as server:
        for i in range(runs):
            with fresh_database(server, "bench_load") as url:
                items_s.append(_cli(url, "load", "items", str(items_path), "--quiet"))
                copy_s.append(_bare_copy(url, events_path))
                load_s.append(_cli(url, "load", "events", str(events_path), "--quiet"))
                with psycopg.connect(url) as conn:
                    stored = conn.execute("select count(*) from pgrecs.events").fetchone()[0]
                    rejected = conn.execute("select count(*) from pgrecs.ingest_rejects where kind = 'events'").fetchone()[0]
                    pg_version = conn.execute("show server_version").fetchone()[0]
                checks.append({"events_stored": stored, "rejected": rejected, "sum": stored + rejected})
                print(f"run {i + 1}/{runs}: load {n_events / load_s[-1]:,.0f} rows/s, bare COPY {n_events / copy_s[-1]:,.0f} rows/s",
                      file=sys.stderr)
    value = n_events / median(load_s)
    baseline = n_events / median(copy_s)
    return {
        "metric": f"pgrecs load events, {n_events:,} CSV rows, end to end with validation",
        "value": round(value),
        "unit": "rows/s",
        "baseline": round(baseline),
        "ratio": round(value / baseline, 3),
        "target": ">= 50,000 rows/s",
        "met": value >= 50_000,
        "note": f"median of {runs} run(s); baseline = bare COPY into an unlogged text table",
        "events": n_events,
        "file_bytes": events_path.stat().st_size,
        "load_seconds": [round(s, 3) for s in load_s],
        "bare_copy_seconds": [round(s, 3) for s in copy_s],
        "items_load_seconds": [round(s, 3) for s in items_s],
        "generate_seconds": round(generate_s, 1),
        "checks": checks,
        "postgres": pg_version,
    }
