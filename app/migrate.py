"""Schema lifecycle: alembic owns run-once DDL; sql/ holds idempotent files re-applied at head."""

from __future__ import annotations

from pathlib import Path

from pgrecs.resources import resource

# alembic (and SQLAlchemy under it) is imported only where a schema command runs: it is heavier
# than the rest of the CLI together

SQL_DIR = resource("sql")
MIGRATIONS_DIR = resource("migrations")


def alembic_config(url: str):
    from alembic.config import Config

    # alembic.ini is for plain `alembic` in a checkout; everything pgrecs needs is set here
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    return config


def sql_files() -> list[Path]:
    return sorted(SQL_DIR.glob("*.sql"))


def apply_sql_files(dbapi_connection) -> None:
    """Apply every sql/NNN-*.sql file in order, inside the caller's transaction."""
    with dbapi_connection.cursor() as cur:
        for path in sql_files():
            cur.execute(path.read_text())


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    import psycopg

    with psycopg.connect(url) as conn:
        exists = conn.execute("select to_regclass('public.alembic_version') is not null").fetchone()[0]
        if not exists:
            return None
        row = conn.execute("select version_num from public.alembic_version").fetchone()
        return row[0] if row else None


def head_revision() -> str:
    """The newest revision, read from the migration files' `revision` / `down_revision` lines.

    Commands that only compare revisions (`pgrecs db status`, /readyz) read it this way instead of
    through alembic's ScriptDirectory, which imports alembic and SQLAlchemy (half a second of
    start-up); tests/test_migrations.py checks the two agree."""
    import re

    revisions, parents = set(), set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        text = path.read_text()
        revision = re.search(r'^revision\s*=\s*"([^"]+)"', text, re.M)
        if revision is None:
            continue
        revisions.add(revision.group(1))
        parent = re.search(r'^down_revision\s*=\s*"([^"]+)"', text, re.M)
        if parent is not None:
            parents.add(parent.group(1))
    heads = sorted(revisions - parents)
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads ({', '.join(heads)}); expected one")
    return heads[0]
