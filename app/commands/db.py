"""`pgrecs db ...` and `pgrecs migrate`: the server and the schema."""

from __future__ import annotations

import os
import subprocess

import click

from pgrecs import embedded, migrate as schema
from pgrecs.errors import PgrecsError


@click.group()
def db() -> None:
    """Start, stop and inspect the database (embedded unless DATABASE_URL is set)."""


def _data_dir(ctx: click.Context):
    from pgrecs.cli import settings_from

    return settings_from(ctx).embedded_data_dir


@db.command()
@click.pass_context
def start(ctx: click.Context) -> None:
    """Start the embedded PostgreSQL (or reuse the running one) and print its URL."""
    click.echo(embedded.start(_data_dir(ctx)))


@db.command()
@click.pass_context
def stop(ctx: click.Context) -> None:
    """Stop the embedded PostgreSQL."""
    was_running = embedded.stop(_data_dir(ctx))
    click.echo("stopped" if was_running else "not running")


@db.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Say where the database is and whether the schema is at head."""
    from pgrecs.cli import url_from

    if not ctx.find_root().obj.get("db_url") and not embedded.is_running(_data_dir(ctx)):
        click.echo(f"embedded server: not running (data directory {_data_dir(ctx)})")
        return
    url = url_from(ctx)
    current = schema.current_revision(url)
    head = schema.head_revision()
    click.echo(f"url: {url}")
    click.echo(f"schema: {current or 'empty'} (head {head}){'' if current == head else ' - run pgrecs migrate'}")


@db.command()
@click.pass_context
def url(ctx: click.Context) -> None:
    """Print the connection URL (starting the embedded server if needed)."""
    from pgrecs.cli import url_from

    click.echo(url_from(ctx))


@db.command("env")
@click.pass_context
def env(ctx: click.Context) -> None:
    """Print the dbt profile's variables for the database, as shell exports.

    `eval "$(pgrecs db env)"`, then `dbt build --project-dir dbt_project --profiles-dir dbt_project`.
    """
    import shlex

    from pgrecs.cli import url_from
    from pgrecs.dbt import PROJECT_DIR, dbt_env

    for name, value in dbt_env(url_from(ctx)).items():
        click.echo(f"export {name}={shlex.quote(value)}")
    click.echo(f"export DBT_PROFILES_DIR={shlex.quote(str(PROJECT_DIR))}")


@db.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def psql(ctx: click.Context, psql_args: tuple[str, ...]) -> None:
    """Open psql on the database (the embedded server's own psql when none is installed)."""
    from pgrecs.cli import url_from

    url = url_from(ctx)
    binary = embedded.psql_path()
    if not os.path.exists(binary):
        raise PgrecsError("psql not found")
    raise SystemExit(subprocess.call([binary, url, *psql_args]))


@click.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.pass_context
def migrate(ctx: click.Context, revision: str) -> None:
    """Bring the schema to head (alembic) and re-apply the idempotent sql/ files."""
    from pgrecs.cli import url_from

    url = url_from(ctx)
    try:
        schema.upgrade(url, revision)
    except PgrecsError:
        raise
    except Exception as exc:
        raise PgrecsError(f"migration failed: {str(exc).splitlines()[0]}") from exc
    click.echo(f"schema at {schema.current_revision(url)}")
