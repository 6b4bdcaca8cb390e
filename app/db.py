"""Connections. Everything goes through one URL: DATABASE_URL, or the embedded server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg

from pgrecs import embedded
from pgrecs.config import Settings, settings
from pgrecs.errors import PgrecsError, first_line


def database_url(config: Settings | None = None) -> str:
    """DATABASE_URL when set; otherwise the embedded server, started if needed."""
    chosen = config or settings()
    if chosen.database_url:
        return chosen.database_url
    return embedded.start(chosen.embedded_data_dir)


def configure(conn: psycopg.Connection, tenant: str | None = None) -> None:
    """Per-connection setup: the tenant context (None: the configured tenant; '': none) and pgvector
    types (once the extension exists)."""
    if tenant is None:
        tenant = settings().tenant
    conn.execute("select set_config('pgrecs.tenant', %s, false)", (tenant,))
    has_vector = conn.execute("select 1 from pg_extension where extname = 'vector'").fetchone()
    if has_vector:
        from pgvector.psycopg import register_vector

        register_vector(conn)
    conn.commit()


@contextlib.contextmanager
def connect(url: str | None = None, *, tenant: str | None = None, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """A configured connection; commits on success, rolls back on error."""
    url = url or database_url()
    try:
        conn = psycopg.connect(url, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise PgrecsError(f"cannot reach the database: {first_line(exc)}") from exc
    with conn:
        configure(conn, tenant)
        conn.autocommit = autocommit
        yield conn
