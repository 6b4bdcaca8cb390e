"""`pgrecs items embeddable ID [--allow|--refuse|--auto]`: see and override whether an item is embedded
(recs.embed_decision, recs.set_embed_override, recs.embed_overrides)."""

from __future__ import annotations

import click

from pgrecs.cli import tenant_from, url_from
from pgrecs.errors import PgrecsError, first_line


@click.group()
def items() -> None:
    """Items of the catalog: embedding decisions."""


def _echo(row) -> None:
    external_id, title, override, rule_problem, decision, _problem = row
    click.echo(f"{external_id}\t{title or '(no title)'}\t{decision}")
    rule = "fine" if rule_problem is None else rule_problem
    click.echo(f"  rule: {rule}; override: {'none' if override is None else ('allow' if override else 'refuse')}")


@items.command("embeddable")
@click.argument("item", required=False)
@click.option("--allow", "decision", flag_value="allow", help="Embed the item whatever the junk-text rule says.")
@click.option("--refuse", "decision", flag_value="refuse", help="Never embed the item.")
@click.option("--auto", "decision", flag_value="auto", help="Let the junk-text rule decide again.")
@click.pass_context
def embeddable(ctx, item, decision):
    """Whether ITEM (external id) is embedded and why; with --allow/--refuse/--auto, decide it.

    Without ITEM, list the items whose embedding was decided by hand. A decision queues the item:
    `pgrecs embed` (or the watcher) applies it."""
    from psycopg import errors

    from pgrecs.db import connect

    if item is None and decision:
        raise PgrecsError("name the item to decide: pgrecs items embeddable ITEM --allow")
    with connect(url_from(ctx), tenant=tenant_from(ctx)) as conn:
        if item is None:
            rows = conn.execute("select * from recs.embed_overrides(n => 1000)").fetchall()
            if not rows:
                click.echo("no embedding decisions: the junk-text rule decides for every item")
            for external_id, title, override, rule_problem in rows:
                click.echo(f"{external_id}\t{'allow' if override else 'refuse'}\t{title or '(no title)'}"
                           f"\t(rule: {rule_problem or 'fine'})")
            return
        try:
            if decision:
                embed = {"allow": True, "refuse": False, "auto": None}[decision]
                row = conn.execute("select * from recs.set_embed_override(item => %s, embed => %s)",
                                   (item, embed)).fetchone()
            else:
                row = conn.execute("select * from recs.embed_decision(item => %s)", (item,)).fetchone()
        except errors.NoDataFound as exc:
            raise PgrecsError(first_line(exc)) from exc
        if row is None:
            raise PgrecsError(f"unknown item: {item}")
        _echo(row)


COMMANDS = [items]
