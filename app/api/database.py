"""One connection pool per process, opened on first use; a connection is borrowed per request.

Every pooled connection runs as the database role `pgrecs_api` (no BYPASSRLS, see
sql/070_security.sql): either the pool logs in as a role granted pgrecs_api
(API_DATABASE_URL, from $PGRECS_API_DATABASE_URL), or it logs in with DATABASE_URL and switches with
SET ROLE. Row-level security then confines every query to the tenant in the GUC pgrecs.tenant.

One round trip per checkout: the first
statement on a borrowed connection sets the request's tenant (from its API key: the key lookup
is the same statement, see checkout_for_key) and the statement timeout as session settings,
returns current_user, and is committed in the same pipeline. A connection that no longer runs as
pgrecs_api (request code ran RESET ROLE or SET ROLE) is closed, never lent again, and another
one is borrowed: nothing ran on it but that statement. Since every checkout overwrites the
tenant before any query, connections go back to the pool without a reset round trip.

Replicas (pgrecs.api.replicas): a view marked @replica_read (recommendations, similar items,
search) borrows its connection from a healthy hot standby when there is one; everything else runs
on the primary. Read-your-writes: a write that succeeded answers with X-PgRecs-LSN (the primary's
WAL insert position after its commit); a read that sends it back is served by a replica only when
that replica's replay has reached it (checked in the same setup statement), else by the primary.
A read that fails on a replica because the server or the connection failed is run once more on
the primary, and the replica is marked down for a short backoff. X-PgRecs-Backend names the
server that answered.
"""

from __future__ import annotations

import functools
import logging
import re

import psycopg
from flask import Flask, current_app, g, has_request_context, request
from psycopg_pool import ConnectionPool, PoolTimeout

from pgrecs.db import configure, database_url
from pgrecs.errors import first_line

log = logging.getLogger("pgrecs.api")

API_ROLE = "pgrecs_api"
_ATTEMPTS = 3
LSN_HEADER = "X-PgRecs-LSN"
BACKEND_HEADER = "X-PgRecs-Backend"
PRIMARY = "primary"
_LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")

# Every setup statement starts with current_user and `{caught_up}`: true on the primary; on a
# replica, whether its replay has reached the request's LSN token (its first parameter).
_CAUGHT_UP_PRIMARY = "true"
_CAUGHT_UP_REPLICA = ("coalesce(%s::pg_lsn is null and pg_catalog.pg_is_in_recovery()"
                      " or pg_catalog.pg_last_wal_replay_lsn() >= %s::pg_lsn, false)")

# tenant and timeout as session settings (not SET LOCAL): request code may commit several
# transactions and the tenant must hold for all of them
_SETUP = ("select current_user, {caught_up}, set_config('pgrecs.tenant', %s, false),"
          " set_config('statement_timeout', %s, false)")
# the same, with the tenant of the active key with this sha256 ('' when there is none: sees nothing)
_SETUP_FOR_KEY = ("select current_user, {caught_up}, k.key_id, k.tenant_id, k.scopes,"
                  " set_config('pgrecs.tenant', coalesce(k.tenant_id, ''), false),"
                  " set_config('statement_timeout', %s, false)"
                  " from (select) as one left join pgrecs.api_key_lookup(%s) as k on true")

# the same, for a merchant console session token (pgrecs.console_session_touch also records it as seen)
_SETUP_FOR_SESSION = ("select current_user, {caught_up}, s.key_id, s.tenant_id, s.scopes, s.key_name,"
                      " set_config('pgrecs.tenant', coalesce(s.tenant_id, ''), false),"
                      " set_config('statement_timeout', %s, false)"
                      " from (select) as one left join pgrecs.console_session_touch(%s, %s::interval) as s on true")


class WrongRole(RuntimeError):
    """A pooled connection no longer runs as the API role."""


def _configure(conn: psycopg.Connection) -> None:
    # no tenant until a request sets one (and until then the policies show nothing)
    configure(conn, "")
    if conn.execute("select current_user").fetchone()[0] != API_ROLE:
        conn.execute(psycopg.sql.SQL("set role {}").format(psycopg.sql.Identifier(API_ROLE)))
    conn.commit()


def _pool_url() -> str:
    url = current_app.extensions.get("pgrecs_pool_url")
    if url is None:
        url = current_app.extensions["pgrecs_pool_url"] = (
            current_app.config["API_DATABASE_URL"] or current_app.config["DATABASE_URL"] or database_url())
    return url


def _pool_size() -> int:
    return current_app.config["DB_POOL_SIZE"]


def get_pool() -> ConnectionPool:
    """The primary's pool."""
    pool = current_app.extensions.get("pgrecs_pool")
    if pool is None:
        pool = ConnectionPool(_pool_url(), min_size=1, max_size=_pool_size(), open=True,
                              configure=_configure, timeout=10)
        current_app.extensions["pgrecs_pool"] = pool
    return pool


def replica_set():
    """This process's read replicas (pgrecs.api.replicas), found on first use."""
    from pgrecs.api import replicas

    return replicas.replica_set(_pool_url())


def replica_read(view):
    """Mark a read-only view as servable by a replica; a failure of the replica's server or
    connection during the view is retried once on the primary."""
    from pgrecs.api import replicas

    @functools.wraps(view)
    def serve(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except Exception as exc:
            kind = replicas.failure_kind(exc)
            replica = g.get("db_replica")
            if kind is None or replica is None:
                raise
            if kind == "down":
                replica.mark_down(exc)
            _discard()
            _checkout_primary(_SETUP, (current_tenant(), _timeout()))
            return view(*args, **kwargs)

    serve._pgrecs_replica_read = True
    return serve


def _is_replica_read() -> bool:
    if not has_request_context() or not request.endpoint:
        return False
    view = current_app.view_functions.get(request.endpoint)
    return bool(getattr(view, "_pgrecs_replica_read", False))


def request_lsn() -> str | None:
    """The read-your-writes token the request carries (400 for a malformed one)."""
    token = request.headers.get(LSN_HEADER, "").strip()
    if not token:
        return None
    if not _LSN.match(token):
        from apiflask import abort

        abort(400, message=f"{LSN_HEADER} must be a WAL position such as 0/16B3748 (from a write's response)")
    return token


def served_by() -> str | None:
    """The server this request's connection came from: 'primary' or a replica's name (None: no query)."""
    return g.get("db_backend")


def current_tenant() -> str:
    """The tenant of this request: its API key's tenant ('' before authentication: sees nothing)."""
    return g.get("tenant", "")


def _timeout() -> str:
    return f"{int(current_app.config['STATEMENT_TIMEOUT_MS'])}ms"


def _run_setup(conn: psycopg.Connection, query: str, params: tuple) -> tuple:
    """The setup statement and its commit in one pipeline: one round trip."""
    with conn.pipeline():
        cur = conn.execute(query, params)
        conn.commit()
    return cur.fetchone()


def _checkout(query: str, params: tuple) -> tuple:
    """Borrow a connection for this request and run the setup statement on it; returns its row
    (without current_user and the caught-up flag). A replica read tries the healthy replicas first."""
    if "db_conn" in g and g.get("db_request") is not _this_request():
        _give_back()  # an app context kept across requests (tests) still holds the last one's connection
    if "db_conn" in g:
        caught_up = _CAUGHT_UP_PRIMARY if g.get("db_replica") is None else _CAUGHT_UP_REPLICA
        lsn = () if g.get("db_replica") is None else (request_lsn(),) * 2
        row = _run_setup(g.db_conn, query.format(caught_up=caught_up), lsn + params)
        if row[0] != API_ROLE:
            _discard()
            raise WrongRole(f"the request's connection runs as {row[0]!r}, not {API_ROLE!r}")
        return row[2:]
    if _is_replica_read():
        row = _checkout_replica(query, params)
        if row is not None:
            return row
    return _checkout_primary(query, params)


def _this_request():
    return request._get_current_object() if has_request_context() else None


def _checkout_primary(query: str, params: tuple) -> tuple:
    row = _checkout_from(get_pool(), query.format(caught_up=_CAUGHT_UP_PRIMARY), params)
    g.db_backend, g.db_replica = PRIMARY, None
    return row[2:]


def _checkout_replica(query: str, params: tuple) -> tuple | None:
    """The setup row from the first usable replica that has replayed the request's token; None when
    there is none (the primary serves)."""
    lsn = request_lsn()
    for replica in replica_set().candidates():
        try:
            pool = replica.get_pool(_configure, _pool_size())
            row = _checkout_from(pool, query.format(caught_up=_CAUGHT_UP_REPLICA), (lsn, lsn, *params))
        except PoolTimeout:
            continue  # busy, not broken: the next server
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            replica.mark_down(exc)
            continue
        if not row[1]:
            _give_back()  # has not replayed the caller's write yet (or is no longer a standby)
            continue
        g.db_backend, g.db_replica = replica.name, replica
        return row[2:]
    return None


def _checkout_from(pool: ConnectionPool, query: str, params: tuple) -> tuple:
    for _ in range(_ATTEMPTS):
        cm = pool.connection()
        conn = cm.__enter__()
        try:
            row = _run_setup(conn, query, params)
        except BaseException as exc:
            cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if row[0] == API_ROLE:
            g.db_conn_cm = cm
            g.db_conn = conn
            g.db_request = _this_request()
            return row
        # someone ran RESET ROLE or SET ROLE on it: close it, so the pool never lends it again
        conn.close()
        cm.__exit__(None, None, None)
    raise WrongRole(f"no pooled connection runs as {API_ROLE!r}")


def _give_back() -> None:
    """Return this request's connection to its pool unused (only its setup statement ran)."""
    g.pop("db_request", None)
    g.pop("db_backend", None)
    g.pop("db_replica", None)
    g.pop("db_conn", None)
    cm = g.pop("db_conn_cm", None)
    if cm is not None:
        cm.__exit__(None, None, None)


def _discard() -> None:
    g.pop("db_request", None)
    g.pop("db_backend", None)
    g.pop("db_replica", None)
    conn, cm = g.pop("db_conn", None), g.pop("db_conn_cm", None)
    if conn is not None:
        conn.close()
    if cm is not None:
        cm.__exit__(None, None, None)


def checkout_for_key(key_sha256: bytes) -> tuple[int, str, list[str]] | None:
    """Borrow this request's connection and, in the same round trip, look the API key up and set
    its tenant: (key id, tenant, scopes), or None for an unknown or revoked key (tenant '')."""
    row = _checkout(_SETUP_FOR_KEY, (_timeout(), key_sha256))
    if row[0] is None and g.get("db_replica") is not None:
        # a key made a moment ago may not have reached the replica yet: the primary decides
        _give_back()
        row = _checkout_primary(_SETUP_FOR_KEY, (_timeout(), key_sha256))
    if row[0] is None:
        return None
    return row[0], row[1], row[2]


def checkout_for_session(token_sha256: bytes, idle: str) -> tuple[int, str, list[str], str] | None:
    """Borrow this request's connection and, in the same round trip, find the live console session
    with this token hash and set its tenant: (key id, tenant, scopes, key name), or None."""
    row = _checkout(_SETUP_FOR_SESSION, (_timeout(), token_sha256, idle))
    if row[0] is None:
        return None
    return row[0], row[1], row[2], row[3]


def get_conn():
    """The connection of this request (committed at teardown unless the request failed)."""
    if "db_conn" not in g or g.get("db_request") is not _this_request():
        _checkout(_SETUP, (current_tenant(), _timeout()))
    return g.db_conn


def on_primary(statements: list[tuple[str, dict | tuple]]) -> None:
    """Run writes on the primary for a request served by a replica (its tenant, one round trip)."""
    with get_pool().connection() as conn, conn.pipeline():
        conn.execute("select set_config('pgrecs.tenant', %s, false), set_config('statement_timeout', %s, false)",
                     (current_tenant(), _timeout()))
        for query, params in statements:
            conn.execute(query, params)
        conn.commit()


def _mark_response(response):
    """X-PgRecs-Backend on every response that queried; X-PgRecs-LSN after a successful write."""
    backend = g.get("db_backend")
    if backend is None or g.get("db_request") is not _this_request():
        return response
    response.headers[BACKEND_HEADER] = backend
    writes = request.method not in ("GET", "HEAD", "OPTIONS") and not _is_replica_read()
    if writes and backend == PRIMARY and response.status_code < 400 and "db_conn" in g:
        conn = g.db_conn
        conn.commit()
        response.headers[LSN_HEADER] = conn.execute("select pg_catalog.pg_current_wal_insert_lsn()::text").fetchone()[0]
        conn.commit()
    return response


def _release(exc) -> None:
    cm = g.pop("db_conn_cm", None)
    backend = g.get("db_backend")
    g.pop("db_conn", None)
    if cm is None:
        return
    try:
        cm.__exit__(type(exc) if exc else None, exc, None)
    except psycopg.OperationalError as lost:
        # the server went away after the response was built (a standby stopped, a primary failing
        # over): the pool discards the broken connection; the answer still reaches the client, and
        # what is lost (a GET's request-log rows) is logged here rather than turned into an error
        log.warning("connection to %s lost before the request's commit: %s",
                    backend or "the database", first_line(lost))


def init_app(app: Flask) -> None:
    app.after_request(_mark_response)
    app.teardown_appcontext(_release)
