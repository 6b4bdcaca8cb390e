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
"""

from __future__ import annotations

import psycopg
from flask import Flask, current_app, g
from psycopg_pool import ConnectionPool

from pgrecs.db import configure, database_url

API_ROLE = "pgrecs_api"
_ATTEMPTS = 3

# tenant and timeout as session settings (not SET LOCAL): request code may commit several
# transactions and the tenant must hold for all of them
_SETUP = ("select current_user, set_config('pgrecs.tenant', %s, false),"
          " set_config('statement_timeout', %s, false)")
# the same, with the tenant of the active key with this sha256 ('' when there is none: sees nothing)
_SETUP_FOR_KEY = ("select current_user, k.key_id, k.tenant_id, k.scopes,"
                  " set_config('pgrecs.tenant', coalesce(k.tenant_id, ''), false),"
                  " set_config('statement_timeout', %s, false)"
                  " from (select) as one left join pgrecs.api_key_lookup(%s) as k on true")

# the same, for a merchant console session token (pgrecs.console_session_touch also records it as seen)
_SETUP_FOR_SESSION = ("select current_user, s.key_id, s.tenant_id, s.scopes, s.key_name,"
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


def get_pool() -> ConnectionPool:
    pool = current_app.extensions.get("pgrecs_pool")
    if pool is None:
        url = current_app.config["API_DATABASE_URL"] or current_app.config["DATABASE_URL"] or database_url()
        pool = ConnectionPool(url, min_size=1, max_size=current_app.config["DB_POOL_SIZE"], open=True,
                              configure=_configure, timeout=10)
        current_app.extensions["pgrecs_pool"] = pool
    return pool


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
    """Borrow a connection for this request and run the setup statement on it; returns its row."""
    if "db_conn" in g:
        row = _run_setup(g.db_conn, query, params)
        if row[0] != API_ROLE:
            _discard()
            raise WrongRole(f"the request's connection runs as {row[0]!r}, not {API_ROLE!r}")
        return row
    for _ in range(_ATTEMPTS):
        cm = get_pool().connection()
        conn = cm.__enter__()
        try:
            row = _run_setup(conn, query, params)
        except BaseException as exc:
            cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if row[0] == API_ROLE:
            g.db_conn_cm = cm
            g.db_conn = conn
            return row
        # someone ran RESET ROLE or SET ROLE on it: close it, so the pool never lends it again
        conn.close()
        cm.__exit__(None, None, None)
    raise WrongRole(f"no pooled connection runs as {API_ROLE!r}")


def _discard() -> None:
    conn, cm = g.pop("db_conn", None), g.pop("db_conn_cm", None)
    if conn is not None:
        conn.close()
    if cm is not None:
        cm.__exit__(None, None, None)


def checkout_for_key(key_sha256: bytes) -> tuple[int, str, list[str]] | None:
    """Borrow this request's connection and, in the same round trip, look the API key up and set
    its tenant: (key id, tenant, scopes), or None for an unknown or revoked key (tenant '')."""
    row = _checkout(_SETUP_FOR_KEY, (_timeout(), key_sha256))
    if row[1] is None:
        return None
    return row[1], row[2], row[3]


def checkout_for_session(token_sha256: bytes, idle: str) -> tuple[int, str, list[str], str] | None:
    """Borrow this request's connection and, in the same round trip, find the live console session
    with this token hash and set its tenant: (key id, tenant, scopes, key name), or None."""
    row = _checkout(_SETUP_FOR_SESSION, (_timeout(), token_sha256, idle))
    if row[1] is None:
        return None
    return row[1], row[2], row[3], row[4]


def get_conn():
    """The connection of this request (committed at teardown unless the request failed)."""
    if "db_conn" not in g:
        _checkout(_SETUP, (current_tenant(), _timeout()))
    return g.db_conn


def _release(exc) -> None:
    cm = g.pop("db_conn_cm", None)
    g.pop("db_conn", None)
    if cm is None:
        return
    cm.__exit__(type(exc) if exc else None, exc, None)


def init_app(app: Flask) -> None:
    app.teardown_appcontext(_release)
