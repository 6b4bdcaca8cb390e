"""`pgrecs demo` and `pgrecs serve`: re-runs keep the keys, the sample's times end yesterday, a busy
port is one line, and the server's embedding watcher embeds an item written through the API."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pgrecs import api_keys
from pgrecs.commands.demo import SAMPLE, demo_keys, shift_sample_events


def _read(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _times(records: list[dict]) -> list[dt.datetime]:
    return [dt.datetime.fromisoformat(r["occurred_at"]) for r in records]


def test_sample_events_end_yesterday_with_every_interval_kept(tmp_path):
    original = _read(SAMPLE / "events.jsonl.gz")
    today = dt.date(2026, 12, 2)
    shifted = _read(shift_sample_events(SAMPLE / "events.jsonl.gz", tmp_path / "a.jsonl.gz", today))
    assert len(shifted) == len(original)
    before, after = _times(original), _times(shifted)
    assert max(after).astimezone(dt.timezone.utc).date() == dt.date(2026, 12, 1)
    # one shift of whole days for every event: intervals, times of day and order are all kept
    shifts = {a - b for a, b in zip(after, before)}
    assert len(shifts) == 1 and shifts.pop() % dt.timedelta(days=1) == dt.timedelta(0)
    assert all({k: v for k, v in s.items() if k not in ("occurred_at", "event_id")}
               == {k: v for k, v in o.items() if k != "occurred_at"} for s, o in zip(shifted, original))
    # ids come from the original lines: another day gives the same ids, repeated lines share one
    later = _read(shift_sample_events(SAMPLE / "events.jsonl.gz", tmp_path / "b.jsonl.gz", today + dt.timedelta(days=9)))
    assert [r["event_id"] for r in later] == [r["event_id"] for r in shifted]
    distinct_lines = {json.dumps(o, sort_keys=True) for o in original}
    assert len({r["event_id"] for r in shifted}) == len(distinct_lines)


def test_a_rerun_on_a_later_day_adds_no_events(cli, conn, tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("external_id,title\n22728,ALARM CLOCK BAKELIKE PINK\n22727,ALARM CLOCK BAKELIKE RED\n")
    source = tmp_path / "events.jsonl.gz"
    lines = [{"user_id": "12583", "item_id": "22728", "event_type": "purchase", "value": 90.0,
              "occurred_at": "2010-12-01T08:45:00+00:00", "session_id": "536370"},
             {"user_id": "12583", "item_id": "22727", "event_type": "purchase", "value": 45.0,
              "occurred_at": "2011-03-04T10:00:00+00:00", "session_id": "536999"}]
    with gzip.open(source, "wt", encoding="utf-8") as f:
        for line in lines + lines[:1]:  # a repeated line, as the source has
            f.write(json.dumps(line) + "\n")
    assert cli("load", "items", str(items)).exit_code == 0
    first = shift_sample_events(source, tmp_path / "day1.jsonl.gz", dt.date(2026, 12, 2))
    assert cli("load", "events", str(first)).exit_code == 0
    stored = conn.execute("select min(occurred_at), max(occurred_at), count(*) from pgrecs.events").fetchone()
    assert stored[2] == 2 and stored[1].date() == dt.date(2026, 12, 1)
    assert stored[1] - stored[0] == dt.datetime(2011, 3, 4, 10) - dt.datetime(2010, 12, 1, 8, 45)
    later = shift_sample_events(source, tmp_path / "day2.jsonl.gz", dt.date(2026, 12, 20))
    assert cli("load", "events", str(later)).exit_code == 0
    assert conn.execute("select min(occurred_at), max(occurred_at), count(*) from pgrecs.events").fetchone() == stored


def test_demo_keys_are_kept_on_a_rerun_and_replaced_on_request(db_url, conn):
    def active(key: str) -> bool:
        return conn.execute("select count(*) from pgrecs.api_key_lookup(%s)", (api_keys.key_sha256(key),)).fetchone()[0] == 1

    first = demo_keys(db_url, "default")
    assert set(first) == {"demo", "demo-merchant"} and all(v["key"].startswith("pgr_") for v in first.values())
    again = demo_keys(db_url, "default")
    # nothing revoked and no plaintext stored: the rerun names the kept keys
    assert all("key" not in v for v in again.values())
    assert again["demo"]["prefix"] == first["demo"]["key"][:10]
    assert active(first["demo"]["key"]) and active(first["demo-merchant"]["key"])
    renewed = demo_keys(db_url, "default", renew=True)
    assert not active(first["demo"]["key"]) and active(renewed["demo"]["key"])
    assert conn.execute("select count(*) from pgrecs.api_keys where revoked_at is null").fetchone()[0] == 2


@pytest.fixture
def busy_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    return lines[0]


def test_a_busy_port_is_one_line_before_anything_starts(cli, conn, busy_port):
    started = time.perf_counter()
    line = _one_line_error(cli("demo", "--port", str(busy_port)))
    assert line == f"error: port {busy_port} is in use; choose another with --port or make demo PORT=..."
    assert time.perf_counter() - started < 30  # refused before migrating, loading or embedding
    assert conn.execute("select count(*) from pgrecs.items").fetchone()[0] == 0
    line = _one_line_error(cli("serve", "--port", str(busy_port)))
    assert line == f"error: port {busy_port} is in use; choose another with --port"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, key: str | None = None, method: str = "GET", body: dict | None = None):
    request = urllib.request.Request(url, method=method, headers={"X-API-Key": key} if key else {},
                                     data=None if body is None else json.dumps(body).encode())
    if body is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


@pytest.mark.slow  # the embedding watcher loads the model
def test_serve_watch_embeds_an_item_written_through_the_api(db_url, conn, tmp_path):
    titles = ["RED RETROSPOT LUNCH BAG", "PINK POLKADOT LUNCH BAG", "WOODEN PICTURE FRAME WHITE", "GLASS STAR LANTERN"]
    for n, title in enumerate(titles):
        conn.execute("insert into pgrecs.items (external_id, title) values (%s, %s)", (f"S{n}", title))
    conn.commit()
    _, key = api_keys.create_key(conn, "default", ["read", "write"], "watch test")
    conn.commit()
    port = _free_port()
    env = {**os.environ, "PGRECS_HOME": str(tmp_path / "home")}
    server = subprocess.Popen([sys.executable, "-m", "pgrecs", "--db-url", db_url, "serve", "--watch", "--port",
                               str(port), "--workers", "1"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if _get(f"{base}/healthz")[0] == 200:
                    break
            except OSError:  # not listening yet, or the worker still loading the query model
                pass
            assert time.monotonic() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.5)
        status, body = _get(f"{base}/items/NEW-BAG", key, method="PUT",
                            body={"title": "RED SPOTTY LUNCH BAG", "description": "A red lunch bag with white dots"})
        assert status == 201 and body["embedding_queued"]
        # the watcher, not this test, embeds it (and the four before it)
        while True:
            similar = _get(f"{base}/items/NEW-BAG/similar?k=2", key)[1]["results"]
            if similar:
                break
            assert time.monotonic() < deadline and server.poll() is None, "the item was never embedded"
            time.sleep(0.5)
        assert similar[0]["external_id"] in ("S0", "S1")
    finally:
        server.terminate()
        output = server.communicate(timeout=60)[0]
    # the watcher ends with the server: its LISTEN connection goes away
    for _ in range(50):
        listening = conn.execute("select count(*) from pg_stat_activity where datname = current_database()"
                                 " and query ilike 'listen pgrecs_embed%'").fetchone()[0]
        conn.commit()
        if listening == 0:
            break
        time.sleep(0.2)
    assert listening == 0, output
    assert "[ERROR]" not in output and "Traceback" not in output, output
    access = [line for line in output.splitlines() if '"pgrecs.access"' in line and "/similar" in line]
    assert access and len(access) == len({json.loads(line)["request_id"] for line in access})


def test_refresh_lists_only_problem_nodes_unless_verbose(capsys):
    import pgrecs.cli  # noqa: F401 (registers the commands; a command module imported first would be circular)
    from pgrecs.commands.refresh import _Progress
    from pgrecs.dbt import NodeResult

    # statuses as dbt reports them: the adapter's message for a built model, "pass" for a test
    nodes = [NodeResult("model", "fct_item_popularity", "SELECT 2917", 0.4),
             NodeResult("model", "int_item_events_decayed", "CREATE VIEW", 0.1),
             NodeResult("test", "unique_items", "pass", 0.1),
             NodeResult("test", "not_null_price", "fail", 0.1)]
    for verbose in (False, True):
        progress = _Progress(verbose)
        progress.step("dbt build")
        for n, node in enumerate(nodes, start=1):
            progress.node(node, n, len(nodes))
        progress.close()
        lines = capsys.readouterr().err.splitlines()
        listed = [line for line in lines if line.startswith("  ")]
        if verbose:
            assert len(listed) == 4 and "SELECT 2917 model fct_item_popularity" in listed[0]
        else:
            assert listed == ["  fail test not_null_price"]
        assert any(line.startswith("dbt build: ") and line.endswith("4 nodes") for line in lines)
