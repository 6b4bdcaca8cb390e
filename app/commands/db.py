"""`pgrecs db ...` and `pgrecs migrate`: the server and the schema."""

from __future__ import annotations

import os
import subprocess

import click

from pgrecs import embedded, migrate as schema
from pgrecs.errors import PgrecsError, first_line


@click.group()
def db() -> None:
    """Start, stop and inspect the database (embedded unless DATABASE_URL is set)."""


def _settings(ctx: click.Context):
    from pgrecs.cli import settings_from

    return settings_from(ctx)


def _data_dir(ctx: click.Context):
    return _settings(ctx).embedded_data_dir


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
        raise PgrecsError(f"migration failed: {first_line(exc)}") from exc
    click.echo(f"schema at {schema.current_revision(url)}")


@db.group()
def replica() -> None:
    """Streaming hot standbys of the embedded server, for read-only API calls."""


def _embedded_primary(ctx: click.Context) -> str:
    """The embedded server's URL (started if needed); replicas are made of the embedded server only."""
    if ctx.find_root().obj.get("db_url"):
        raise PgrecsError("replicas are made of the embedded server only (DATABASE_URL is set): "
                          "name external standbys in PGRECS_REPLICA_URLS")
    return embedded.start(_data_dir(ctx))


@replica.command("add")
@click.argument("name", default="replica1")
@click.pass_context
def replica_add(ctx: click.Context, name: str) -> None:
    """Create and start the hot standby NAME (a base backup and a replication slot); reruns only start it."""
    from pgrecs import replicas

    primary = _embedded_primary(ctx)
    made, created = replicas.add(primary, _settings(ctx).home, name)
    verb = "created" if created else "already present, running"
    click.echo(f"replica {made.name} {verb}: {made.url(primary)}")


@replica.command("list")
@click.pass_context
def replica_list(ctx: click.Context) -> None:
    """Every replica with its state and replay lag (embedded ones, then PGRECS_REPLICA_URLS)."""
    from pgrecs import replicas
    from pgrecs.config import replica_urls

    settings = _settings(ctx)
    db_url = ctx.find_root().obj.get("db_url")
    primary = db_url or embedded.url_if_running(settings.embedded_data_dir)
    primary_lsn = replicas.primary_lsn(primary) if primary else None
    rows = []
    for made in replicas.embedded_replicas(settings.home):
        if made.is_running():
            # the embedded server's login and database when the primary is not running
            url = made.url(primary or "user=postgres dbname=postgres")
            rows.append(("embedded", made.name, url, replicas.replica_state(url, primary_lsn)))
        else:
            rows.append(("embedded", made.name, f"{replicas.HOST}:{made.port}", None))
    for url in replica_urls():
        rows.append(("external", replicas.display_url(url), url, replicas.replica_state(url, primary_lsn)))
    if not rows:
        click.echo("no replicas (pgrecs db replica add NAME, or PGRECS_REPLICA_URLS)")
        return
    click.echo(f"{'kind':<9} {'name':<24} {'state':<14} {'replay_lsn':<14} {'lag_s':>8} {'lag_bytes':>10}  url")
    for kind, name, url, state in rows:
        if state is None:
            label, lsn, lag_s, lag_b = "stopped", "-", "-", "-"
        else:
            label, lsn = state.label, state.replay_lsn or "-"
            lag_s = "-" if state.lag_seconds is None else f"{state.lag_seconds:.3f}"
            lag_b = "-" if state.lag_bytes is None else str(state.lag_bytes)
        shown = replicas.display_url(url) if "=" in url or "://" in url else url
        click.echo(f"{kind:<9} {name:<24} {label:<14} {lsn:<14} {lag_s:>8} {lag_b:>10}  {shown}")


@replica.command("remove")
@click.argument("name")
@click.pass_context
def replica_remove(ctx: click.Context, name: str) -> None:
    """Stop the replica NAME, drop its replication slot and delete its data."""
    from pgrecs import replicas

    existed = replicas.remove(_embedded_primary(ctx), _settings(ctx).home, name)
    click.echo(f"replica {name} removed" if existed else f"replica {name} not present")
