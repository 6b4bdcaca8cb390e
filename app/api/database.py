"""One connection pool per process, opened on first use; a connection is borrowed per request."""

from __future__ import annotations

from flask import Flask, current_app, g
from psycopg_pool import ConnectionPool

from app.db import configure, database_url


def get_pool() -> ConnectionPool:
    pool = current_app.extensions.get("pgrecs_pool")
    if pool is None:
        url = current_app.config["DATABASE_URL"] or database_url()
        tenant = current_app.config["TENANT"]
        pool = ConnectionPool(url, min_size=1, max_size=8, open=True,
                              configure=lambda conn: configure(conn, tenant))
        current_app.extensions["pgrecs_pool"] = pool
    return pool


def get_conn():
    """The connection of this request (committed at teardown unless the request failed)."""
    if "db_conn" not in g:
        g.db_conn_cm = get_pool().connection()
        g.db_conn = g.db_conn_cm.__enter__()
    return g.db_conn


def _release(exc) -> None:
    cm = g.pop("db_conn_cm", None)
    g.pop("db_conn", None)
    if cm is not None:
        cm.__exit__(type(exc) if exc else None, exc, None)


def init_app(app: Flask) -> None:
    app.teardown_appcontext(_release)
