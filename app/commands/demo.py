"""`pgrecs demo`: the whole product on the shipped sample, in one command."""

from __future__ import annotations

import click

from pgrecs.resources import resource

SAMPLE = resource("data/sample")


@click.command()
@click.option("--serve/--no-serve", default=True, show_default=True, help="Start the HTTP API at the end.")
@click.option("--port", default=8000, show_default=True)
@click.pass_context
def demo(ctx: click.Context, serve: bool, port: int) -> None:
    """Start the database, migrate, load the sample, embed, refresh, and serve the API."""
    from pgrecs.cli import main

    steps = [
        ("migrate", {}),
        ("load", {"args": ["items", str(SAMPLE / "items.jsonl.gz")]}),
        ("load", {"args": ["events", str(SAMPLE / "events.jsonl.gz")]}),
        ("embed", {"args": []}),
        ("refresh", {"args": []}),
    ]
    for name, spec in steps:
        command = main.commands.get(name)
        if command is None:
            continue
        click.secho(f"==> pgrecs {name} {' '.join(spec.get('args', []))}", bold=True)
        sub_ctx = command.make_context(name, list(spec.get("args", [])), parent=ctx.find_root())
        with sub_ctx:
            command.invoke(sub_ctx)
    key = _demo_key(ctx)
    merchant_key = _demo_key(ctx, name="demo-merchant", scopes=["merchant"])
    click.echo(NEXT_STEPS.format(port=port, key=key, merchant_key=merchant_key))
    if serve and "serve" in main.commands:
        serve_ctx = main.commands["serve"].make_context("serve", ["--port", str(port)], parent=ctx.find_root())
        with serve_ctx:
            main.commands["serve"].invoke(serve_ctx)


def _demo_key(ctx: click.Context, name: str = "demo", scopes: list[str] | None = None) -> str:
    """A fresh key named `name` (read+write unless scopes are given); the previous keys of that
    name are revoked, so re-running is safe."""
    import psycopg

    from pgrecs.api.auth import create_key
    from pgrecs.cli import tenant_from, url_from

    tenant = tenant_from(ctx)
    with psycopg.connect(url_from(ctx), autocommit=True) as conn:
        conn.execute("update pgrecs.api_keys set revoked_at = now()"
                     " where tenant_id = %s and name = %s and revoked_at is null", (tenant, name))
        _, key = create_key(conn, tenant, scopes or ["read", "write"], name)
    return key


NEXT_STEPS = """
pgrecs is ready. Try:
  .venv/bin/pgrecs db psql -c "select rank, external_id, score, reasons from recs.recommend_for_user(user_id => '12583', k => 10)"
  .venv/bin/pgrecs audit
  export KEY={key}   # an API key for this demo (read, write); pgrecs keys create makes more
  curl -H "X-API-Key: $KEY" 'http://127.0.0.1:{port}/items/22728/similar?k=5'
  curl -H "X-API-Key: $KEY" 'http://127.0.0.1:{port}/search?q=red+retrospot+lunch+bag&k=5'
  curl -H "X-API-Key: $KEY" 'http://127.0.0.1:{port}/items/22728/recommendations?placement=pdp_similar&k=5'
  curl -H "X-API-Key: $KEY" 'http://127.0.0.1:{port}/users/12583/recommendations?k=5&explain=true'
  curl -H "X-API-Key: $KEY" -X POST -H 'Content-Type: application/json' \\
       -d '{{"user_id": "12583", "item_id": "22728", "event_type": "click"}}' 'http://127.0.0.1:{port}/events'
  curl 'http://127.0.0.1:{port}/openapi.json'

Merchant console: http://127.0.0.1:{port}/console
  sign in with this merchant key (a new one each run; the previous demo-merchant key is revoked):
  {merchant_key}
"""

COMMANDS = [demo]
