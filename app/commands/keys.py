"""`pgrecs keys create|list|revoke`: API keys for the HTTP API (stored hashed; see app/api/auth.py)."""

from __future__ import annotations

import click

from pgrecs.cli import url_from


def _connect(ctx):
    import psycopg

    from pgrecs.errors import PgrecsError, first_line

    try:
        # the operator's role, no tenant set: keys of every tenant are managed here
        return psycopg.connect(url_from(ctx), autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise PgrecsError(f"cannot reach the database: {first_line(exc)}") from exc


@click.group()
def keys():
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option("--tenant", "key_tenant", default=None,
              help="Tenant the key acts for (created when new); default: the global --tenant.")
@click.option("--scopes", required=True, help="Comma-separated: read (recommendations, similar, search), "
              "write (events, items), admin (keys, placements, metrics).")
@click.option("--name", default="", help="A label to tell keys apart.")
@click.pass_context
def create(ctx, key_tenant, scopes, name):
    """Create a key and print it once (only its sha256 is stored)."""
    from pgrecs.api_keys import create_key, parse_scopes

    from pgrecs.cli import tenant_from

    wanted = parse_scopes(scopes)
    key_tenant = key_tenant or tenant_from(ctx)
    with _connect(ctx) as conn:
        key_id, key = create_key(conn, key_tenant, wanted, name)
    click.echo(f"key {key_id} for tenant {key_tenant} with scopes {','.join(wanted)}; "
               "store it now, it is not shown again:", err=True)
    click.echo(key)


@keys.command("list")
@click.option("--tenant", "key_tenant", default=None, help="Only this tenant's keys.")
@click.pass_context
def list_(ctx, key_tenant):
    """List keys (id, tenant, scopes, prefix, name, created, revoked); never the keys themselves."""
    from pgrecs.api_keys import list_keys

    with _connect(ctx) as conn:
        rows = list_keys(conn, key_tenant)
    click.echo(f"{'id':>5}  {'tenant':<16} {'scopes':<17} {'prefix':<11} {'created':<20} {'status':<27} name")
    for key_id, tenant, name, prefix, scopes, created, revoked in rows:
        status = f"revoked {revoked:%Y-%m-%d %H:%M:%S}" if revoked else "active"
        click.echo(f"{key_id:>5}  {tenant:<16} {','.join(scopes):<17} {prefix + '…':<11} "
                   f"{created:%Y-%m-%d %H:%M:%S}  {status:<27} {name}")


@keys.command("revoke")
@click.argument("key_id", type=int)
@click.pass_context
def revoke(ctx, key_id):
    """Revoke a key: requests with it get 401 from now on."""
    from pgrecs.api_keys import revoke_key
    from pgrecs.errors import PgrecsError

    with _connect(ctx) as conn:
        if not revoke_key(conn, key_id):
            raise PgrecsError(f"no API key with id {key_id}")
    click.echo(f"key {key_id} revoked")


COMMANDS = [keys]
