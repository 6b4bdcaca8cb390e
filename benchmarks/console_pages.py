"""Server time of each console page, in one process: `python benchmarks/console_pages.py URL KEY USER RUNS`.

Run as a script by bench_console (one process per code tree, so a baseline checkout can be timed
with the same loop): it signs in with the merchant key through the app's WSGI interface (no
network, one request at a time), requests each page 2 times to warm up and then RUNS times, and
prints {page: [milliseconds, ...]} as JSON.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

WARM_UPS = 2


def pages(user: str) -> dict[str, str]:
    return {
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
        "experiment": "/console/experiments/home-diversity",
        "exposure": "/console/exposure",
        "why not": f"/console/why-not?context_user={user}&why_not=22727&placement=home_for_you",
    }


def _time(client, path: str, runs: int, headers: dict | None = None) -> list[float]:
    times = []
    for i in range(runs + WARM_UPS):
        started = time.perf_counter()
        response = client.get(path, headers=headers or {})
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {response.status_code}")
        if i >= WARM_UPS:
            times.append(round(elapsed, 2))
    return times


def measure(url: str, merchant_key: str, user: str, runs: int, api_key: str | None = None) -> dict[str, list[float]]:
    logging.disable(logging.INFO)  # the access log of every request is noise here
    from pgrecs.api import create_app

    app = create_app({"DATABASE_URL": url})
    client = app.test_client()
    login = client.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)
    signed_in = client.post("/console/login", data={"api_key": merchant_key, "csrf_token": token})
    if signed_in.status_code != 302:
        raise RuntimeError(f"sign-in failed: HTTP {signed_in.status_code}")
    measured = {name: _time(client, path, runs) for name, path in pages(user).items()}
    if api_key:
        measured["api: GET /items/22728/recommendations"] = _time(
            client, "/items/22728/recommendations?k=10", runs, headers={"X-API-Key": api_key})
    app.extensions["pgrecs_pool"].close()
    return measured


if __name__ == "__main__":
    url, key, user, runs = sys.argv[1:5]
    flags = sys.argv[5:]
    api = next((f.split("=", 1)[1] for f in flags if f.startswith("--api-key=")), None)
    print(json.dumps(measure(url, key, user, int(runs), api_key=api)))
