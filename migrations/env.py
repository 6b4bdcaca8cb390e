"""Alembic environment: run-once DDL from versions/, then the idempotent sql/ files at head."""

from __future__ import annotations

from alembic import context
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

import psycopg

from pgrecs.migrate import apply_sql_files


def run_migrations_online() -> None:
    config = context.config
    url = config.attributes.get("database_url")
    if url is None:
        from pgrecs.db import database_url

        url = database_url()
    # any libpq URL or conninfo string works: psycopg connects, SQLAlchemy only drives alembic
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=False)
        with context.begin_transaction():
            context.run_migrations()
            heads = set(ScriptDirectory.from_config(config).get_heads())
            current = set(context.get_context().get_current_heads())
            if current == heads:
                apply_sql_files(connection.connection.driver_connection)


if context.is_offline_mode():
    raise SystemExit("offline SQL generation is not supported; run against a database")
run_migrations_online()
