"""`pgrecs refresh` on 1,000,000 events (full) and after 10,000 more (incremental).

Data: the load benchmark's generator (UCI online-retail item and customer frequencies, timestamps
and session-per-customer-day, 70/15/10/5% view/click/add_to_cart/purchase), 1,010,000 events:
the first 1,000,000 are loaded before the full refresh, the last 10,000 before the incremental one.
Both runs are `dbt build` (models and all data/unit tests) + EASE (full only) + publish.
Targets: full <= 60 s, incremental <= 10 s.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

N_EVENTS = int(os.environ.get("BENCH_REFRESH_EVENTS", 1_000_000))
N_NEW = int(os.environ.get("BENCH_REFRESH_NEW_EVENTS", 10_000))


def _split(events_path: Path, first: int, directory: Path) -> tuple[Path, Path]:
    head, tail = directory / f"refresh_head_{first}.csv", directory / f"refresh_tail_{first}.csv"
    with open(events_path, encoding="utf-8") as src, open(head, "w", encoding="utf-8") as h, \
            open(tail, "w", encoding="utf-8") as t:
        header = src.readline()
        h.write(header)
        t.write(header)
        for i, line in enumerate(src):
            (h if i < first else t).write(line)
    return head, tail


def _new_events(url: str, n: int, path: Path, *, realistic: bool, seed: int) -> Path:
    """n new events after the last loaded one, as a CSV for `pgrecs load events`.

    realistic: a day of traffic. Sessions of geometric length (mean 8 events) from users drawn by
    their share of past events (active users come back more), items by their share of past
    events, all timestamped within the day after the latest event.
    worst case (not realistic): every event from a user drawn uniformly, so nearly every user's
    baskets, and so nearly every co-occurrence list, change.
    """
    import csv
    import datetime as dt

    import numpy as np
    import psycopg

    from benchmarks.bench_load import EVENT_PROBS, EVENT_TYPES

    rng = np.random.default_rng(seed)
    with psycopg.connect(url) as conn:
        users = conn.execute(
            "select u.external_id, count(*) from pgrecs.events e join pgrecs.users u using (user_id)"
            " group by 1 order by 1").fetchall()
        items = conn.execute(
            "select i.external_id, count(*) from pgrecs.events e join pgrecs.items i using (item_id)"
            " group by 1 order by 1").fetchall()
        last = conn.execute("select max(occurred_at) from pgrecs.events").fetchone()[0]
    user_ids = np.array([u for u, _ in users])
    p_users = np.array([c for _, c in users], dtype=float)
    p_users /= p_users.sum()
    item_ids = np.array([i for i, _ in items])
    p_items = np.array([c for _, c in items], dtype=float)
    p_items /= p_items.sum()
    if realistic:
        rows_users = []
        while len(rows_users) < n:
            rows_users += [rng.choice(user_ids, p=p_users)] * int(rng.geometric(1 / 8))
        event_users = np.array(rows_users[:n])
    else:
        event_users = rng.choice(user_ids, size=n)
    event_items = rng.choice(item_ids, size=n, p=p_items)
    seconds = np.sort(rng.integers(1, 86_400, size=n))
    kinds = rng.choice(len(EVENT_TYPES), size=n, p=EVENT_PROBS)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "event_type", "value", "occurred_at", "session_id"])
        for user, item, sec, kind in zip(event_users, event_items, seconds, kinds):
            t = last + dt.timedelta(seconds=int(sec))
            w.writerow([user, item, EVENT_TYPES[kind], "1" if EVENT_TYPES[kind] == "purchase" else "",
                        t.strftime("%Y-%m-%dT%H:%M:%SZ"), f"{user}-{t:%Y%m%d}-new"])
    return path


def _load(url: str, kind: str, path: Path) -> None:
    from click.testing import CliRunner

    from app.cli import main

    result = CliRunner().invoke(main, ["--db-url", url, "load", kind, str(path)], catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(result.output)


def run() -> dict:
    import psycopg

    from app.signals.refresh import refresh
    from benchmarks.bench_load import generate
    from benchmarks.run import WORK, bench_server, fresh_database

    items_path, events_path = generate(N_EVENTS + N_NEW, WORK / "data")
    head, tail = _split(events_path, N_EVENTS, WORK / "data")
    with bench_server() as server, fresh_database(server, "bench_refresh") as url:
        _load(url, "items", items_path)
        _load(url, "events", head)
        with psycopg.connect(url) as conn:
            events_full, users, items = conn.execute(
                "select count(*), count(distinct user_id), count(distinct item_id) from pgrecs.events").fetchone()
        started = time.perf_counter()
        full = refresh(url, full=True)
        full_wall = time.perf_counter() - started

        _load(url, "events", tail)
        with psycopg.connect(url) as conn:
            events_after = conn.execute("select count(*) from pgrecs.events").fetchone()[0]
        started = time.perf_counter()
        incremental = refresh(url)
        incremental_wall = time.perf_counter() - started

        started = time.perf_counter()
        incremental_models_only = refresh(url, run_tests=False)
        models_only_wall = time.perf_counter() - started
        with psycopg.connect(url) as conn:
            lists = conn.execute(
                "select count(distinct item_id) from pgrecs.item_neighbors where signal = 'cooccurrence'").fetchone()[0]

    def parts(report, wall):
        return {"wall_s": round(wall, 2), "dbt_s": round(report.dbt_seconds, 2), "ease_s": round(report.ease_seconds, 2),
                "publish_s": round(report.publish_seconds, 2), "models": report.models, "tests": report.tests,
                "cooccurrence_items_recomputed": sum(t["cooccurrence_items"] for t in report.tenants),
                "notes": report.notes}

    return {
        "metric": "pgrecs refresh, full (dbt build + EASE + publish)",
        "value": round(full_wall, 2),
        "unit": "s",
        "target": "full <= 60 s, incremental <= 10 s",
        "met": full_wall <= 60 and incremental_wall <= 10,
        "note": f"incremental after {events_after - events_full:,} new events: {incremental_wall:.1f} s",
        "events": events_full,
        "users": users,
        "items_with_events": items,
        "items_with_cooccurrence_lists": lists,
        "full": parts(full, full_wall),
        "incremental": parts(incremental, incremental_wall),
        "incremental_again_no_new_events_models_only": parts(incremental_models_only, models_only_wall),
    }
