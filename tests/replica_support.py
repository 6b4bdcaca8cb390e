"""A streaming hot standby of the test session's embedded server, and helpers to use it.

`replica_server` makes it once per session the way `pgrecs db replica add` does (a base backup,
a replication slot, its own port) and removes it at the end. Per-test databases are created on
the primary and reach the replica by replay, so a test waits for replay before using one there.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from conftest import KeyedClient, api_key_for, new_app
from pgrecs import replicas


def embedded_home(server_url: str) -> Path:
    """PGRECS_HOME of the session's embedded server (its data directory's parent)."""
    with psycopg.connect(server_url) as conn:
        data_dir = Path(conn.execute("show data_directory").fetchone()[0])
    if data_dir.name != "pgdata":
        pytest.fail(f"replica tests need the embedded server, not {data_dir}")
    return data_dir.parent


@pytest.fixture(scope="session")
def replica_server(server_url):
    """(replica, its URL for the session server's default database); stopped and removed at the end."""
    home = embedded_home(server_url)
    made, _ = replicas.add(server_url, home, "session")
    yield made
    replicas.remove(server_url, home, "session")


def on_replica(url: str, replica: replicas.EmbeddedReplica) -> str:
    """The same database and user, on the replica."""
    return replicas.replica_url(url, replicas.HOST, replica.port)


def wait_for_replay(primary_url: str, replica_url: str, timeout_s: float = 30.0) -> str:
    """Wait until the replica has replayed everything the primary wrote so far; returns that LSN."""
    with psycopg.connect(primary_url, autocommit=True) as primary:
        target = primary.execute("select pg_current_wal_insert_lsn()::text").fetchone()[0]
    with psycopg.connect(conninfo_with_db(replica_url, "postgres"), autocommit=True) as standby:
        deadline = time.monotonic() + timeout_s
        while not standby.execute("select pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0]:
            if time.monotonic() > deadline:
                raise AssertionError(f"replica did not replay {target} in {timeout_s} s")
            time.sleep(0.02)
    return target


def conninfo_with_db(url: str, dbname: str) -> str:
    from psycopg.conninfo import make_conninfo

    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)


def replica_app(db_url: str, replica: replicas.EmbeddedReplica, **config):
    """The API over db_url with the replica as its read replica; its test client waits for replay
    before each request, so a read finds on the replica what the test wrote on the primary; it records
    (method, path, status, X-PgRecs-Backend) of each request in app.extensions["pgrecs_test_backends"]."""
    app = new_app(db_url, REPLICA_URLS=[on_replica(db_url, replica)], **config)
    app.test_client_class = CaughtUpClient
    return app


class CaughtUpClient(KeyedClient):
    """Waits until the replica has replayed the primary's writes, then sends the request."""

    def open(self, *args, **kwargs):
        app = self.application
        api_key_for(app)  # made on the primary: replayed with the rest
        wait_for_replay(app.config["DATABASE_URL"], app.config["REPLICA_URLS"][0])
        response = super().open(*args, **kwargs)
        app.extensions.setdefault("pgrecs_test_backends", []).append(
            (response.request.method, response.request.path, response.status_code,
             response.headers.get("X-PgRecs-Backend")))
        return response
