"""One connection pool per process, opened on first use; a connection is borrowed per request.

Every pooled connection runs as the database role `pgrecs_api` (no BYPASSRLS, see
sql/070_security.sql): either the pool logs in as a role granted pgrecs_api
(API_DATABASE_URL / $PGRECS_API_DATABASE_URL), or it logs in with DATABASE_URL and switches with
SET ROLE. On every checkout the request's tenant (from its API key) and the statement timeout are
set, and the role is checked again, so request code that ran RESET ROLE cannot leak into the next
request. Row-level security then confines every query to that tenant.
"""

from __future__ import annotations

import os

import psycopg
from flask import Flask, current_app, g
from psycopg_pool import ConnectionPool

from app.db import configure, database_url

API_ROLE = "pgrecs_api"


class WrongRole(RuntimeError):
    """A pooled connection no longer runs as the API role."""


def _configure(conn: psycopg.Connection) -> None:
    configure(conn, "")
    # configure() set the tenant for the CLI's default; an API connection has no tenant until a
    # request sets one (and then sees nothing, by the policies, until it does).
    conn.execute("select set_config('pgrecs.tenant', '', false)")
    if conn.execute("select current_user").fetchone()[0] != API_ROLE:
        conn.execute(psycopg.sql.SQL("set role {}").format(psycopg.sql.Identifier(API_ROLE)))
    conn.commit()


def _reset(conn: psycopg.Connection) -> None:
    """Back in the pool: forget the tenant; a connection whose role was changed is discarded."""
    user = conn.execute("select current_user, set_config('pgrecs.tenant', '', false)").fetchone()[0]
    conn.commit()
    if user != API_ROLE:
        raise WrongRole(f"connection came back as {user!r}, not {API_ROLE!r}: discarded")


def get_pool() -> ConnectionPool:
    pool = current_app.extensions.get("pgrecs_pool")
    if pool is None:
        url = (current_app.config.get("API_DATABASE_URL") or os.environ.get("PGRECS_API_DATABASE_URL")
               or current_app.config["DATABASE_URL"] or database_url())
        pool = ConnectionPool(url, min_size=1, max_size=current_app.config.get("DB_POOL_SIZE", 8), open=True,
                              configure=_configure, reset=_reset, timeout=10)
        current_app.extensions["pgrecs_pool"] = pool
    return pool


def current_tenant() -> str:
    """The tenant of this request: its API key's tenant ('' before authentication: sees nothing)."""
    return g.get("tenant", "")


def get_conn():
    """The connection of this request (committed at teardown unless the request failed)."""
    if "db_conn" not in g:
        cm = get_pool().connection()
        conn = cm.__enter__()
        g.db_conn_cm = cm
        g.db_conn = conn
        timeout_ms = int(current_app.config.get("STATEMENT_TIMEOUT_MS") or 0)
        # session-level settings (not SET LOCAL): request code may commit several transactions
        # and the tenant must hold for all of them; _reset clears it when the connection returns.
        user = conn.execute(
            "select current_user, set_config('pgrecs.tenant', %s, false), set_config('statement_timeout', %s, false)",
            (current_tenant(), f"{timeout_ms}ms"),
        ).fetchone()[0]
        if user != API_ROLE:
            # someone ran RESET ROLE or SET ROLE: close it, so the pool never lends it again
            conn.close()
            raise WrongRole(f"pooled connection runs as {user!r}, not {API_ROLE!r}")
        conn.commit()
    return g.db_conn


def _release(exc) -> None:
    cm = g.pop("db_conn_cm", None)
    g.pop("db_conn", None)
    if cm is None:
        return
    cm.__exit__(type(exc) if exc else None, exc, None)


def init_app(app: Flask) -> None:
    app.teardown_appcontext(_release)
