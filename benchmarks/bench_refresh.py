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
