"""Merchant console pages: server time per page on the demo data (target: at most 300 ms each).

Data: `pgrecs demo --no-serve` (the shipped sample: 2,917 items, 33,226 events, embedded with the
real model and refreshed with dbt) plus the served traffic of tests/console_demo.py (an
experiment, lists served to the 60 most active users with impressions, clicks and purchases).
Each page is requested BENCH_CONSOLE_RUNS times (default 20) after 2 warm-up requests, signed in,
through the app's WSGI interface in this process (no network, one request at a time): the time is
the server's, from request to complete response. Per page: median and p95; headline: the slowest
page's p95. Baseline: GET /items/22728/recommendations of the JSON API, timed the same way.
BENCH_CONSOLE_DATABASE_URL=<url> measures a database that already holds the demo (`pgrecs demo
--no-serve`) instead of building one; the traffic is added to it.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import sys
import time
from pathlib import Path

from benchmarks.run import bench_server, fresh_database

RUNS = int(os.environ.get("BENCH_CONSOLE_RUNS", 20))
TARGET_MS = 300.0
TESTS = Path(__file__).resolve().parent.parent / "tests"


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def _time(client, path: str, headers: dict | None = None) -> list[float]:
    times = []
    for i in range(RUNS + 2):
        started = time.perf_counter()
        response = client.get(path, headers=headers or {})
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {response.status_code}")
        if i >= 2:
            times.append(elapsed)
    return times


@contextlib.contextmanager
def _demo_database():
    given = os.environ.get("BENCH_CONSOLE_DATABASE_URL")
    if given:
        yield given, False
        return
    with bench_server() as server, fresh_database(server, "bench_console") as url:
        yield url, True


def run() -> dict:
    sys.path.insert(0, str(TESTS))
    import console_demo

    from pgrecs.api import create_app

    with _demo_database() as (url, built):
        data = console_demo.build(url) if built else console_demo.add_traffic(url)
        user = data["users"][0]
        pages = {
            "overview": "/console/",
            "catalog health": "/console/catalog",
            "items": "/console/items",
            "item": "/console/items/22728",
            "item + why-not": "/console/items/22728?why_not=22727&placement=pdp_similar",
            "users": "/console/users",
            "user": f"/console/users/{user}",
            "rules": "/console/rules",
            "new rule": "/console/rules/new",
            "experiments": "/console/experiments",
            "experiment": f"/console/experiments/{console_demo.EXPERIMENT}",
            "exposure": "/console/exposure",
            "why not": f"/console/why-not?context_user={user}&why_not=22727&placement=home_for_you",
        }
        app = create_app({"DATABASE_URL": url})
        client = app.test_client()
        page = client.get("/console/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        assert client.post("/console/login", data={"api_key": data["merchant_key"], "csrf_token": token}).status_code == 302
        results = {}
        for name, path in pages.items():
            times = _time(client, path)
            results[name] = {"path": path, "median_ms": round(statistics.median(times), 1),
                             "p95_ms": round(_p95(times), 1), "max_ms": round(max(times), 1)}
        api = _time(client, "/items/22728/recommendations?k=10", {"X-API-Key": data["api_key"]})
        app.extensions["pgrecs_pool"].close()
    slowest = max(results, key=lambda n: results[n]["p95_ms"])
    worst = results[slowest]["p95_ms"]
    return {
        "metric": "slowest console page, p95 server time",
        "value": worst,
        "unit": "ms",
        "baseline": round(_p95(api), 1),
        "ratio": round(worst / _p95(api), 2),
        "target": f"<= {TARGET_MS:.0f} ms per page",
        "met": all(r["p95_ms"] <= TARGET_MS for r in results.values()),
        "note": f"{slowest} page; {RUNS} runs per page after 2 warm-ups, in-process WSGI, demo data + traffic; "
                "baseline: GET /items/22728/recommendations p95",
        "database": "given (BENCH_CONSOLE_DATABASE_URL)" if os.environ.get("BENCH_CONSOLE_DATABASE_URL") else "built",
        "pages": results,
        "api_recommendations_ms": {"median_ms": round(statistics.median(api), 1), "p95_ms": round(_p95(api), 1)},
        "runs": RUNS,
    }
