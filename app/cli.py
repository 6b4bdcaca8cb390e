"""The one operator CLI: `pgrecs <command>`. Each area registers its commands here."""

from __future__ import annotations

import sys

import click

from pgrecs.errors import PgrecsError


class OneLineErrors(click.Group):
    """Expected failures print one line on stderr and exit 1; never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PgrecsError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db-url", default=None, metavar="URL",
              help="PostgreSQL URL (default: $DATABASE_URL, else the embedded server under $PGRECS_HOME).")
@click.option("--tenant", default=None, metavar="TENANT",
              help="Tenant whose data the command reads and writes (default: $PGRECS_TENANT, else 'default').")
@click.version_option(package_name="pgrecs")
@click.pass_context
def main(ctx: click.Context, db_url: str | None, tenant: str | None) -> None:
    """pgrecs: semantic, collaborative and business-aware recommendations inside PostgreSQL."""
    from pgrecs.config import load_settings

    # read once per invocation (.env.example lists every variable); the options override two of them
    settings = load_settings()
    settings = settings.replace(database_url=db_url or settings.database_url, tenant=tenant or settings.tenant)
    ctx.obj = {"settings": settings, "db_url": settings.database_url, "tenant": settings.tenant}


def settings_from(ctx: click.Context):
    """This invocation's settings (pgrecs.config.Settings)."""
    return ctx.find_root().obj["settings"]


def url_from(ctx: click.Context) -> str:
    """The database URL for this invocation (starts the embedded server when none is given)."""
    from pgrecs.db import database_url

    return database_url(settings_from(ctx))


def tenant_from(ctx: click.Context) -> str:
    return ctx.find_root().obj["tenant"]


def _register() -> None:
    from pgrecs.commands import db as db_commands

    main.add_command(db_commands.db)
    main.add_command(db_commands.migrate)
    for module_name in ("pgrecs.commands.ingest", "pgrecs.commands.demo", "pgrecs.commands.embed", "pgrecs.commands.serve", "pgrecs.commands.evaluate", "pgrecs.commands.refresh", "pgrecs.commands.keys", "pgrecs.commands.rules", "pgrecs.commands.items"):
        module = __import__(module_name, fromlist=["COMMANDS"])
        for command in module.COMMANDS:
            main.add_command(command)


_register()
