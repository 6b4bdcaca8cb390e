"""`pgrecs demo`: the whole product on the shipped sample, in one command, safe to re-run.

- The sample's events are loaded shifted by whole days so that the last one falls yesterday
  (every interval kept). Each carries an event id made from its original line, so a re-run on a
  later day finds the events already loaded and adds none (see data/sample/README.md).
- The demo API key and merchant key are made once and shown once. A re-run keeps them (only their
  hashes are stored) and says so; `--new-keys` revokes them and prints new ones.
- The server runs with the embedding watcher beside it (`pgrecs serve --watch`).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
from pathlib import Path

import click

from pgrecs.resources import resource

SAMPLE = resource("data/sample")
HOST = "127.0.0.1"
PORT_HINT = "choose another with --port or make demo PORT=..."
# name -> scopes of the keys the demo prints
DEMO_KEYS = {"demo": ["read", "write"], "demo-merchant": ["merchant"]}


@click.command()
@click.option("--serve/--no-serve", default=True, show_default=True,
              help="Start the HTTP API (with the embedding watcher) at the end.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535),
              help="Port of the HTTP API (make demo PORT=...).")
@click.option("--new-keys", is_flag=True, help="Revoke the demo's API key and merchant key and print new ones.")
@click.option("-v", "--verbose", is_flag=True, help="Show every dbt model and test as the refresh builds it.")
@click.pass_context
def demo(ctx: click.Context, serve: bool, port: int, new_keys: bool, verbose: bool) -> None:
    """Start the database, migrate, load the sample, embed, refresh, and serve the API."""
    from pgrecs.cli import main
    from pgrecs.commands.serve import ensure_port_free
    from pgrecs.config import load_settings

    if serve:
        # before minutes of loading and embedding, not after
        ensure_port_free(HOST, port, PORT_HINT)
    events = shift_sample_events(SAMPLE / "events.jsonl.gz", load_settings().home / "demo" / "events.jsonl.gz",
                                 dt.datetime.now(dt.timezone.utc).date())
    steps = [
        ("migrate", []),
        ("load", ["items", str(SAMPLE / "items.jsonl.gz")]),
        ("load", ["events", str(events)]),
        ("embed", []),
        ("refresh", ["--verbose"] if verbose else []),
    ]
    for name, args in steps:
        command = main.commands[name]
        click.secho(f"==> pgrecs {name} {' '.join(args)}".rstrip(), bold=True)
        with command.make_context(name, list(args), parent=ctx.find_root()) as sub_ctx:
            command.invoke(sub_ctx)
    from pgrecs.cli import tenant_from, url_from

    keys = demo_keys(url_from(ctx), tenant_from(ctx), renew=new_keys)
    click.echo(next_steps(port, keys))
    if serve:
        command = main.commands["serve"]
        with command.make_context("serve", ["--port", str(port), "--watch"], parent=ctx.find_root()) as serve_ctx:
            command.invoke(serve_ctx)


def shift_sample_events(source: Path, target: Path, today: dt.date) -> Path:
    """Write the sample's events to target with every time moved by the same whole number of days,
    so that the last event falls on the day before today; each event gets an id from its
    original line (identical lines, the source's repeated purchase lines, keep one id)."""
    records = []
    with gzip.open(source, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                record["event_id"] = "sample-" + hashlib.sha256(line.strip().encode()).hexdigest()[:24]
                records.append(record)
    times = [dt.datetime.fromisoformat(r["occurred_at"]) for r in records]
    last_day = max(t.astimezone(dt.timezone.utc).date() for t in times)
    shift = dt.timedelta(days=(today - dt.timedelta(days=1) - last_day).days)
    target.parent.mkdir(parents=True, exist_ok=True)
    # mtime 0: the same day writes the same bytes, so a re-run loads the same file
    with open(target, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for record, at in zip(records, times):
            record["occurred_at"] = (at + shift).isoformat()
            gz.write((json.dumps(record) + "\n").encode("utf-8"))
    return target


def demo_keys(url: str, tenant: str, renew: bool = False) -> dict[str, dict]:
    """The demo's keys by name: {"key": plaintext} when made now, {"key_id", "prefix"} for an
    active key kept from an earlier run (its plaintext was shown then and is stored nowhere)."""
    import psycopg

    from pgrecs.api_keys import create_key

    out: dict[str, dict] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name, scopes in DEMO_KEYS.items():
            if renew:
                conn.execute("update pgrecs.api_keys set revoked_at = now()"
                             " where tenant_id = %s and name = %s and revoked_at is null", (tenant, name))
            kept = conn.execute(
                "select key_id, key_prefix from pgrecs.api_keys"
                " where tenant_id = %s and name = %s and revoked_at is null and scopes @> %s::text[]"
                " order by key_id desc limit 1", (tenant, name, scopes)).fetchone()
            if kept is not None:
                out[name] = {"key_id": kept[0], "prefix": kept[1]}
            else:
                out[name] = {"key": create_key(conn, tenant, scopes, name)[1]}
    return out


def next_steps(port: int, keys: dict[str, dict]) -> str:
    api, merchant = keys["demo"], keys["demo-merchant"]
    if "key" in api:
        export = f"  export KEY={api['key']}   # an API key for this demo (read, write); shown once"
    else:
        export = (f"  # KEY: the demo API key you exported before (key {api['key_id']}, {api['prefix']}...) still works;\n"
                  "  # lost it? pgrecs demo --new-keys revokes it and prints a new one")
    if "key" in merchant:
        sign_in = f"  sign in with this merchant key (shown once):\n  {merchant['key']}"
    else:
        sign_in = (f"  sign in with the demo merchant key printed before (key {merchant['key_id']}, "
                   f"{merchant['prefix']}...);\n  lost it? pgrecs demo --new-keys revokes it and prints a new one")
    return NEXT_STEPS.format(port=port, export=export, sign_in=sign_in)


NEXT_STEPS = """
pgrecs is ready. Try:
  .venv/bin/pgrecs db psql -c "select rank, external_id, score, reasons from recs.recommend_for_user(user_id => '12583', k => 10)"
  .venv/bin/pgrecs audit
{export}
  curl -H "X-API-Key: $KEY" 'http://127.0.0.1:{port}/items/22728/similar?k=5'
  curl -H "X-API-Key: $KEY" 'http://127.0.0.1:{port}/search?q=red+retrospot+lunch+bag&k=5'
  curl -H "X-API-Key: $KEY" 'http://127.0.0.1:{port}/items/22728/recommendations?placement=pdp_similar&k=5'
  curl -H "X-API-Key: $KEY" 'http://127.0.0.1:{port}/users/12583/recommendations?k=5&explain=true'
  curl -H "X-API-Key: $KEY" 'http://127.0.0.1:{port}/users/first-visit/recommendations?k=5'
  curl -H "X-API-Key: $KEY" -X POST -H 'Content-Type: application/json' \\
       -d '{{"user_id": "12583", "item_id": "22728", "event_type": "click"}}' 'http://127.0.0.1:{port}/events'
  curl -H "X-API-Key: $KEY" -X PUT -H 'Content-Type: application/json' \\
       -d '{{"title": "RED SPOTTY LUNCH BAG", "description": "A red lunch bag with white polka dots"}}' \\
       'http://127.0.0.1:{port}/items/NEW-BAG-1'
  curl -H "X-API-Key: $KEY" 'http://127.0.0.1:{port}/items/NEW-BAG-1/similar?k=5'   # embedded seconds later
  curl 'http://127.0.0.1:{port}/openapi.json'

Merchant console: http://127.0.0.1:{port}/console
{sign_in}
"""

COMMANDS = [demo]
