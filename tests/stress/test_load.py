"""Load test: 50 concurrent keep-alive clients for 60 s on loopback against `pgrecs serve`
(gunicorn) on the sample data, over item and user recommendations, search and events.
Zero errors; p50/p99 per endpoint printed and written to benchmarks/results/stress_load.json.

A bounded thread-pool client rather than locust: the same measurement with no gevent in the
test process. PGRECS_STRESS_CLIENTS / PGRECS_STRESS_SECONDS change the shape.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import threading
import time
from collections import defaultdict

import numpy as np
import pytest
import requests

from stresskit import REPO, SAMPLE, cli, free_port, popen_cli, wait_http

pytestmark = pytest.mark.stress

CLIENTS = int(os.environ.get("PGRECS_STRESS_CLIENTS", "50"))
SECONDS = float(os.environ.get("PGRECS_STRESS_SECONDS", "60"))
MIX = [("item_recs", 0.35), ("user_recs", 0.2), ("search", 0.15), ("events", 0.3)]


def test_fifty_clients_sixty_seconds(server, tmp_path):
    url = server.database("load_test")
    cli(url, "load", "items", str(SAMPLE / "items.jsonl.gz"), "-q")
    cli(url, "load", "events", str(SAMPLE / "events.jsonl.gz"), "-q")
    cli(url, "embed", timeout=1200)
    # the dbt marts (co-occurrence, popularity); without them the semantic signal still serves
    refreshed = cli(url, "refresh", "--quiet", timeout=1200, check=False)
    key = cli(url, "keys", "create", "--tenant", "default", "--scopes", "read,write").stdout.strip()
    with gzip.open(SAMPLE / "items.jsonl.gz", "rt") as f:
        items = [json.loads(line) for line in f]
    with gzip.open(SAMPLE / "events.jsonl.gz", "rt") as f:
        users = sorted({json.loads(line)["user_id"] for line in f})
    words = [w for row in items for w in (row.get("title") or "").lower().split() if len(w) > 3]

    port = free_port()
    api = popen_cli(url, "serve", "--port", str(port), "--workers", "2", "--threads", "8", log=tmp_path / "serve.log")
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    lock = threading.Lock()
    try:
        wait_http(port)
        base = f"http://127.0.0.1:{port}"
        # warm-up, untimed: each worker loads the query model on its first /search (seconds on 2 cores)
        warm = requests.Session()
        warm.headers["X-API-Key"] = key
        for i in range(8):
            warm.get(f"{base}/search", params={"q": words[i], "k": 10}, timeout=120)
            warm.get(f"{base}/items/{items[i]['external_id']}/recommendations?k=10", timeout=120)
        deadline = time.perf_counter() + SECONDS

        def client(seed: int) -> None:
            rng = random.Random(seed)
            session = requests.Session()
            session.headers["X-API-Key"] = key
            kinds, weights = zip(*MIX)
            n = 0
            while time.perf_counter() < deadline:
                kind = rng.choices(kinds, weights)[0]
                n += 1
                if kind == "item_recs":
                    call = lambda: session.get(f"{base}/items/{rng.choice(items)['external_id']}/recommendations?k=10",
                                               timeout=30)
                elif kind == "user_recs":
                    call = lambda: session.get(f"{base}/users/{rng.choice(users)}/recommendations?k=10", timeout=30)
                elif kind == "search":
                    call = lambda: session.get(f"{base}/search", params={"q": " ".join(rng.sample(words, 2)), "k": 10}, timeout=30)
                else:
                    body = {"user_id": rng.choice(users), "item_id": rng.choice(items)["external_id"],
                            "event_type": rng.choice(["view", "click", "add_to_cart"]), "session_id": f"load-{seed}-{n}"}
                    call = lambda: session.post(f"{base}/events", json=body, timeout=30)
                started = time.perf_counter()
                try:
                    response = call()
                    ok = 200 <= response.status_code < 300
                    what = f"{kind} {response.status_code} {response.text[:200]}"
                except requests.RequestException as exc:
                    ok, what = False, f"{kind} {exc}"
                elapsed = time.perf_counter() - started
                with lock:
                    latencies[kind].append(elapsed)
                    if not ok:
                        errors.append(what)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        api.send_signal(signal.SIGTERM)
        api.communicate(timeout=30)

    report = {"clients": CLIENTS, "seconds": SECONDS, "errors": len(errors), "endpoints": {},
              "refreshed": refreshed.returncode == 0, "server": "pgrecs serve --workers 2 --threads 8 (gunicorn)"}
    total = 0
    for kind, values in sorted(latencies.items()):
        ms = np.asarray(values) * 1000
        total += len(ms)
        report["endpoints"][kind] = {"requests": len(ms), "rps": round(len(ms) / SECONDS, 1),
                                     "p50_ms": round(float(np.percentile(ms, 50)), 1),
                                     "p99_ms": round(float(np.percentile(ms, 99)), 1)}
    report["requests"] = total
    report["rps"] = round(total / SECONDS, 1)
    out = REPO / "benchmarks" / "results" / "stress_load.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print("\n" + json.dumps(report, indent=2))
    assert not errors, errors[:10]
    assert all(report["endpoints"][kind]["requests"] > 0 for kind, _ in MIX)
