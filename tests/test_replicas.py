"""Read replicas: `pgrecs db replica`, reads on standbys and writes on the primary, read-your-writes,
and reads that survive a replica stopped or killed under load. Real embedded primary and standbys."""

from __future__ import annotations

import re
import threading
import time

import psutil
import psycopg
import pytest
from click.testing import CliRunner

import scoring_world as world
from conftest import KeyedClient, api_key_for, close_app, new_app
from pgrecs import replicas
from replica_support import (embedded_home, on_replica, replica_app, replica_server,  # noqa: F401
                             wait_for_replay)


# --- pgrecs db replica add | list | remove -------------------------------------------------------

@pytest.mark.slow  # starts and stops standbys of its own
def test_replica_commands_are_safe_to_rerun(server_url, monkeypatch):
    from pgrecs.cli import main

    home = embedded_home(server_url)
    monkeypatch.setenv("PGRECS_HOME", str(home))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    run = CliRunner().invoke

    added = run(main, ["db", "replica", "add", "cli_made"])
    assert added.exit_code == 0 and "created" in added.output, added.output
    made = replicas.EmbeddedReplica("cli_made", home / "replicas" / "cli_made")
    try:
        assert made.is_running() and (made.data_dir / "standby.signal").exists()
        port = made.port
        again = run(main, ["db", "replica", "add", "cli_made"])
        assert again.exit_code == 0 and "already present" in again.output and made.port == port
        with psycopg.connect(server_url, autocommit=True) as primary:
            slot = primary.execute("select slot_type, active from pg_replication_slots where slot_name = %s",
                                   (made.slot,)).fetchone()
            assert slot == ("physical", True)
            primary.execute("create table if not exists public.replica_probe (n int)")
            primary.execute("insert into public.replica_probe values (42)")
        replica_url = made.url(server_url)
        wait_for_replay(server_url, replica_url)
        with psycopg.connect(replica_url) as standby:
            assert standby.execute("select pg_is_in_recovery(), current_setting('hot_standby')").fetchone() == (
                True, "on")
            assert standby.execute("select count(*) from public.replica_probe where n = 42").fetchone()[0] >= 1
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                standby.execute("insert into public.replica_probe values (1)")

        listing = run(main, ["db", "replica", "list"])
        assert listing.exit_code == 0
        line = next(row for row in listing.output.splitlines() if " cli_made " in row)
        assert re.search(r"embedded\s+cli_made\s+streaming\s+\d+/[0-9A-F]+\s+\d+\.\d{3}\s+\d+\s+127\.0\.0\.1:"
                         + str(port), line), line
        # a stopped replica is listed as stopped
        replicas.stop(made)
        assert re.search(r"cli_made\s+stopped", run(main, ["db", "replica", "list"]).output)
        # add starts a stopped one again
        assert "already present" in run(main, ["db", "replica", "add", "cli_made"]).output and made.is_running()

        bad = run(main, ["db", "replica", "add", "Not-A-Name"])
        assert bad.exit_code == 1 and bad.output.startswith("error: invalid replica name") and \
            len(bad.output.strip().splitlines()) == 1
        external = run(main, ["--db-url", server_url, "db", "replica", "add", "x"])
        assert external.exit_code == 1 and "PGRECS_REPLICA_URLS" in external.output
    finally:
        removed = run(main, ["db", "replica", "remove", "cli_made"])
    assert removed.exit_code == 0 and "removed" in removed.output, removed.output
    assert not made.root.exists() and not made.is_running()
    with psycopg.connect(server_url) as primary:
        assert primary.execute("select count(*) from pg_replication_slots where slot_name = %s",
                               (made.slot,)).fetchone()[0] == 0
    again = run(main, ["db", "replica", "remove", "cli_made"])
    assert again.exit_code == 0 and "not present" in again.output


def test_external_replicas_come_from_the_environment(server_url, replica_server, monkeypatch):
    from pgrecs.cli import main
    from pgrecs.config import replica_urls

    url = replica_server.url(server_url)
    monkeypatch.setenv("PGRECS_REPLICA_URLS", f" {url} ,, ")
    assert replica_urls() == [url]
    listing = CliRunner().invoke(main, ["--db-url", server_url, "db", "replica", "list"])
    assert listing.exit_code == 0
    assert re.search(r"external\s+127\.0\.0\.1:\d+/postgres\s+streaming", listing.output), listing.output


# --- routing ---------------------------------------------------------------------------------------

@pytest.fixture
def shop(db_url, conn):
    """The scoring world with user u1 (viewed F); external id -> item id."""
    ids = world.build(conn)
    uid = world.add_user(conn, "u1")
    world.add_event(conn, uid, ids["F"], "view", "3 hours")
    conn.commit()
    return ids


@pytest.fixture
def app(db_url, replica_server, shop):
    app = replica_app(db_url, replica_server)
    yield app
    close_app(app)


def _backend(response) -> str:
    return response.headers["X-PgRecs-Backend"]


def test_reads_go_to_the_replica_writes_to_the_primary(client, app, db_url, replica_server, shop):
    replica = app.config["REPLICA_URLS"][0]
    name = replicas.display_url(replica)
    for path in ("/items/A/recommendations?placement=t", "/users/u1/recommendations", "/items/A/similar"):
        response = client.get(path)
        assert response.status_code == 200, response.get_json()
        assert _backend(response) == name, path
        assert "X-PgRecs-LSN" not in response.headers
    response = client.post("/recommendations", json={"examples": ["A"], "k": 5})
    assert response.status_code == 200 and _backend(response) == name
    request_id = response.get_json()["request_id"]
    # the list served by the replica is logged on the primary
    with psycopg.connect(db_url) as primary:
        logged = primary.execute("select endpoint, item_ids from pgrecs.recommendation_requests"
                                 " where request_id = %s", (request_id,)).fetchone()
    assert logged == ("examples", [item["item_id"] for item in response.get_json()["items"]])
    # writes: primary, with the read-your-writes token
    response = client.post("/events", json={"user_id": "u2", "item_id": "A", "event_type": "view",
                                            "request_id": request_id})
    assert response.status_code == 201 and _backend(response) == "primary"
    assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", response.headers["X-PgRecs-LSN"])
    response = client.put("/items/NEW", json={"title": "Newly listed runner"})
    assert response.status_code == 201 and _backend(response) == "primary" and response.headers["X-PgRecs-LSN"]
    with psycopg.connect(on_replica(db_url, replica_server)) as standby:
        assert standby.execute("select pg_is_in_recovery()").fetchone()[0]


def test_a_read_with_a_write_token_sees_the_write_while_the_replica_lags(client, app, db_url, replica_server):
    name = replicas.display_url(app.config["REPLICA_URLS"][0])
    assert client.get("/users/u1/recommendations").status_code == 200  # the replica has the shop
    standby_admin = psycopg.connect(on_replica(db_url, replica_server), autocommit=True)
    standby_admin.execute("select pg_wal_replay_pause()")
    try:
        served = []
        for n in range(5):
            user = f"fresh-{n}"
            with KeyedClient(app) as raw:  # does not wait for the paused replay
                posted = raw.post("/events", json={"user_id": user, "item_id": "A", "event_type": "view"})
            assert posted.status_code == 201
            token = posted.headers["X-PgRecs-LSN"]
            # every time: the read that carries the token sees the new user and their event
            fresh = _get_raw(app, f"/users/{user}/recommendations?k=5&explain=true", {"X-PgRecs-LSN": token})
            assert fresh.status_code == 200, fresh.get_json()
            assert "B" in {item["external_id"] for item in fresh.get_json()["items"]}  # A's neighbour, from the event
            served.append(_backend(fresh))
            # without the token the lagging replica answers, and it has not seen the user yet: to it
            # this is a new visitor, served the cold-start list
            stale = _get_raw(app, f"/users/{user}/recommendations?k=5", {})
            assert (stale.status_code, _backend(stale)) == (200, name), app.extensions["pgrecs_replicas"].replicas[0]
            assert stale.get_json()["items"][0]["reasons"][0].startswith("new visitor")
        assert served == ["primary"] * 5
        # a token from the distant future, and a malformed one
        assert _backend(_get_raw(app, "/users/u1/recommendations", {"X-PgRecs-LSN": "FFFF/0"})) == "primary"
        bad = _get_raw(app, "/users/u1/recommendations", {"X-PgRecs-LSN": "yesterday"})
        assert bad.status_code == 400 and "X-PgRecs-LSN" in bad.get_json()["detail"]
        # /readyz and /metrics show the replica paused and behind
        ready = _get_raw(app, "/readyz", {}).get_json()["replicas"][name]
        assert ready["state"] == "paused" and ready["lag_bytes"] > 0 and ready["lag_seconds"] > 0
        metrics = _get_raw(app, "/metrics", {}).get_data(as_text=True)
        lag = re.search(r'^pgrecs_replica_lag_bytes\{replica="' + re.escape(name) + r'"\} (\S+)$', metrics, re.M)
        assert lag and float(lag.group(1)) > 0
    finally:
        standby_admin.execute("select pg_wal_replay_resume()")
    # replayed: the token's read is the replica's again
    wait_for_replay(db_url, app.config["REPLICA_URLS"][0])
    again = _get_raw(app, "/users/fresh-4/recommendations?k=5", {"X-PgRecs-LSN": token})
    assert again.status_code == 200 and _backend(again) == name
    wait_for_replay(db_url, app.config["REPLICA_URLS"][0])
    ready = _get_raw(app, "/readyz", {}).get_json()["replicas"][name]
    # caught up but for WAL the server writes by itself meanwhile (the served list's log row, standby snapshots)
    assert ready["state"] == "streaming" and ready["serving"] is True and 0 <= ready["lag_bytes"] < 1_000_000
    standby_admin.close()


def _get_raw(app, path: str, headers: dict):
    """A request that does not wait for replay first (the replica may lag)."""
    with KeyedClient(app) as c:
        return c.get(path, headers=headers)


# --- faults ------------------------------------------------------------------------------------------

def _load(app, stop: threading.Event, results: list, paths: list[str]) -> None:
    with KeyedClient(app) as c:
        n = 0
        while not stop.is_set():
            try:
                response = c.get(paths[n % len(paths)])
            except Exception as exc:  # a request that raised never answered its client: a failure below
                results.append((time.monotonic(), repr(exc), None))
            else:
                results.append((time.monotonic(), response.status_code, response.headers.get("X-PgRecs-Backend")))
            n += 1


@pytest.mark.slow  # seconds of load while a standby stops
@pytest.mark.parametrize("fault", ["stopped", "killed"])
def test_reads_survive_a_replica_failing_under_load_and_return_to_it(app, db_url, replica_server, fault):
    name = replicas.display_url(app.config["REPLICA_URLS"][0])
    wait_for_replay(db_url, app.config["REPLICA_URLS"][0])
    paths = ["/users/u1/recommendations?k=5", "/items/A/similar?k=3", "/items/A/recommendations?placement=t"]
    stop, results = threading.Event(), []
    threads = [threading.Thread(target=_load, args=(app, stop, results, paths)) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        failed_at = time.monotonic()
        if fault == "stopped":
            replicas.stop(replica_server)
        else:
            postmaster = psutil.Process(_postmaster_pid(replica_server))
            family = [postmaster, *postmaster.children(recursive=True)]
            for process in family:
                process.kill()
            psutil.wait_procs(family, timeout=10)
        time.sleep(1.5)
        restarted_at = time.monotonic()
        replicas.start(replica_server)
        wait_for_replay(db_url, app.config["REPLICA_URLS"][0])
        # the backoff is at most 10 s; wait until reads are the replica's again
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(
                t > restarted_at and backend == name for t, _, backend in results[-20:]):
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    statuses = {status for _, status, _ in results}
    assert statuses == {200}, [r for r in results if r[1] != 200][:5]
    before = [backend for t, _, backend in results if t < failed_at]
    during = [backend for t, _, backend in results if failed_at + 0.5 < t < restarted_at]
    after = [backend for t, _, backend in results if t > restarted_at]
    assert before and set(before) == {name}
    assert during and set(during) == {"primary"}
    assert after[-1] == name
    assert app.extensions["pgrecs_replicas"].replicas[0].failures >= 1


def _postmaster_pid(replica: replicas.EmbeddedReplica) -> int:
    return int((replica.data_dir / "postmaster.pid").read_text().splitlines()[0])


def test_keys_hold_on_the_replica(client, app, db_url):
    from pgrecs import api_keys as auth

    name = replicas.display_url(app.config["REPLICA_URLS"][0])
    with psycopg.connect(db_url, autocommit=True) as admin:
        key_id, key = auth.create_key(admin, "default", ["read"], name="fresh")
        # a key made a moment ago works at once: the primary answers when the replica does not know it
        response = _get_raw(app, "/items/A/similar", {"X-API-Key": key})
        assert response.status_code == 200
        response = client.get("/items/A/similar", headers={"X-API-Key": key})
        assert response.status_code == 200 and _backend(response) == name
        assert client.post("/events", json={"user_id": "u", "item_id": "A", "event_type": "view"},
                           headers={"X-API-Key": key}).status_code == 403
        assert auth.revoke_key(admin, key_id)
    # replayed: the replica refuses the revoked key
    response = client.get("/items/A/similar", headers={"X-API-Key": key})
    assert response.status_code == 401 and "revoked" in response.get_json()["detail"]


# --- discovery ---------------------------------------------------------------------------------------

@pytest.mark.slow  # starts and stops standbys of its own
def test_the_api_takes_up_and_drops_embedded_replicas_without_a_restart(server_url, db_url, shop, monkeypatch):
    home = embedded_home(server_url)
    monkeypatch.setenv("PGRECS_HOME", str(home))
    monkeypatch.delenv("PGRECS_REPLICA_URLS", raising=False)
    app = new_app(db_url)
    api_key_for(app)  # on the primary before the base backup: the new replica has it
    path = "/users/u1/recommendations?k=5"

    def served_until(wanted, timeout_s: float = 15.0) -> list[tuple[int, str]]:
        """Reads until one is answered as wanted(backend) says; every answer, in order."""
        seen, deadline = [], time.monotonic() + timeout_s
        with KeyedClient(app) as c:
            while time.monotonic() < deadline:
                response = c.get(path)
                seen.append((response.status_code, _backend(response)))
                if wanted(seen[-1][1]):
                    return seen
                time.sleep(0.1)
        raise AssertionError(f"no read answered as wanted in {timeout_s} s: {seen[-5:]}")

    try:
        with KeyedClient(app) as c:
            assert c.get(path).status_code == 200  # the process has found its replicas (not this one yet)
            assert "hot_added" not in c.get("/readyz").get_json()["replicas"]
        replicas.add(server_url, home, "hot_added")
        taken_up = served_until(lambda backend: backend == "hot_added")
        with KeyedClient(app) as c:
            assert c.get("/readyz").get_json()["replicas"]["hot_added"]["serving"] is True
        replicas.remove(server_url, home, "hot_added")
        # the next reads fail over to the primary at once, and the replica leaves the list
        dropped = served_until(lambda backend: backend != "hot_added")
        with KeyedClient(app) as c:
            deadline = time.monotonic() + 10
            while "hot_added" in c.get("/readyz").get_json()["replicas"]:
                assert time.monotonic() < deadline, "the removed replica is still listed"
                time.sleep(0.2)
            assert _backend(c.get(path)) != "hot_added"
        assert {status for status, _ in taken_up + dropped} == {200}
    finally:
        replicas.remove(server_url, home, "hot_added")
        close_app(app)
