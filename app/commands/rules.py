"""`pgrecs rules list|add|enable|disable|preview` and `pgrecs why-not`: the console's rule and
why-not tools for the command line (the same recs functions, pgrecs.rules)."""

from __future__ import annotations

import getpass

import click

from pgrecs.cli import tenant_from, url_from


def _actor() -> str:
    return f"cli: {getpass.getuser()}"


def _connect(ctx):
    from pgrecs.db import connect

    return connect(url_from(ctx), tenant=tenant_from(ctx))


def _rule_options(command):
    """The fields of a rule, as options (shared by add and preview)."""
    options = [
        click.option("--name", help="What the rule is for (shown in reasons: 'boosted: campaign NAME')."),
        click.option("--kind", type=click.Choice(["boost", "pin", "block"]), help="boost (or demote), pin or block."),
        click.option("--placement", default=None, help="Only this placement (default: every placement)."),
        click.option("--item", default=None, help="Match this item (external id); a pin needs one."),
        click.option("--brand", default=None, help="Match this brand."),
        click.option("--category", default=None, help="Match this category (at any level of the path)."),
        click.option("--min-margin", default=None, help="Match items with at least this margin."),
        click.option("--factor", default=None, help="Boost: score multiplier (above 1 boosts, below 1 demotes)."),
        click.option("--position", default=None, help="Pin: 1-based position."),
        click.option("--starts", "starts_at", default=None, help="Window start, YYYY-MM-DD[THH:MM] (UTC)."),
        click.option("--ends", "ends_at", default=None, help="Window end, exclusive (UTC)."),
        click.option("--disabled", is_flag=True, help="Store it disabled."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _rule_from(options: dict) -> dict:
    from pgrecs import rules

    return rules.rule_from_form({**options, "enabled": "false" if options.get("disabled") else "true"})


@click.group()
def rules() -> None:
    """Business rules: boosts, pins, blocks and campaigns, with preview and an audit trail."""


@rules.command("list")
@click.option("--changes", is_flag=True, help="Show the audit trail instead (newest first).")
@click.pass_context
def rules_list(ctx, changes):
    """List the rules with their state (live, scheduled, ended, disabled)."""
    from pgrecs import rules as r

    with _connect(ctx) as conn:
        if changes:
            for c in r.changes(conn):
                fields = ", ".join(c["changed_fields"]) if c["action"] == "update" else ""
                click.echo(f"{c['changed_at']:%Y-%m-%d %H:%M:%S}  rule {c['rule_id']:<5} {c['action']:<7} {c['actor']}"
                           + (f"  ({fields})" if fields else ""))
            return
        rows = r.list_rules(conn)
    if not rows:
        click.echo("no rules")
        return
    for x in rows:
        match = ", ".join(f"{k} {v}" for k, v in (("item", x["item_external_id"]), ("brand", x["brand"]),
                                                  ("category", x["category"]), ("margin >=", x["min_margin"])) if v)
        effect = {"boost": f" x{x['factor']}", "pin": f" at {x['position']}"}.get(x["kind"], "")
        window = ""
        if x["starts_at"] or x["ends_at"]:
            window = f"  [{x['starts_at'] or '-'} .. {x['ends_at'] or '-'})"
        click.echo(f"{x['rule_id']:>5}  {x['status']:<9} {x['kind']}{effect:<7} {x['name']!r}  {match}"
                   f"  placement {x['placement'] or 'all'}{window}")


@rules.command("add")
@_rule_options
@click.pass_context
def rules_add(ctx, **options):
    """Add a rule (recs.create_rule), recorded in the audit trail."""
    from pgrecs import rules as r

    rule = _rule_from(options)
    with _connect(ctx) as conn:
        rule_id = r.apply(conn, r.Change("save", rule), _actor())
    click.echo(f"added rule {rule_id}")


def _toggle(ctx, rule_id: int, enable: bool) -> None:
    from pgrecs import rules as r

    with _connect(ctx) as conn:
        r.get_rule(conn, rule_id)
        r.apply(conn, r.Change("enable" if enable else "disable", rule_id=rule_id), _actor())
    click.echo(f"rule {rule_id} {'enabled' if enable else 'disabled'}")


@rules.command("disable")
@click.argument("rule_id", type=int)
@click.pass_context
def rules_disable(ctx, rule_id):
    """Disable a rule (safe to repeat)."""
    _toggle(ctx, rule_id, False)


@rules.command("enable")
@click.argument("rule_id", type=int)
@click.pass_context
def rules_enable(ctx, rule_id):
    """Enable a rule (safe to repeat)."""
    _toggle(ctx, rule_id, True)


@rules.command("preview")
@_rule_options
@click.option("--rule", "rule_id", type=int, default=None,
              help="Preview replacing this rule's fields (with the rule options), or with --disable-rule/--enable-rule.")
@click.option("--disable-rule", is_flag=True, help="Preview disabling --rule.")
@click.option("--enable-rule", is_flag=True, help="Preview enabling --rule.")
@click.option("--context-item", "context_items", multiple=True, help="A product page to preview (repeatable).")
@click.option("--context-user", "context_users", multiple=True, help="A shopper to preview (repeatable).")
@click.option("-k", "k", type=click.IntRange(1, 100), default=10, show_default=True)
@click.pass_context
def rules_preview(ctx, rule_id, disable_rule, enable_rule, context_items, context_users, k, **options):
    """Show the lists before and after a change; nothing is saved (the change is rolled back)."""
    from pgrecs import rules as r
    from pgrecs.errors import PgrecsError

    with _connect(ctx) as conn:
        if disable_rule or enable_rule:
            if rule_id is None:
                raise PgrecsError("--disable-rule and --enable-rule need --rule ID")
            current = r.get_rule(conn, rule_id)
            change = r.Change("disable" if disable_rule else "enable", rule_id=rule_id)
            rule = {**current, "item": current["item_external_id"]}
        else:
            rule = _rule_from(options)
            change = r.Change("save", rule, rule_id)
        contexts = [("item", x) for x in context_items] + [("user", x) for x in context_users]
        contexts = contexts or r.preview_contexts(conn, rule)
        results = r.preview(conn, change, _actor(), contexts, k=k, placement=options.get("placement") or rule.get("placement"))
    for res in results:
        mark = "changed" if res["changed"] else "unchanged"
        click.echo(f"{'item' if res['kind'] == 'item' else 'user'} {res['context']} ({res['placement']}): {mark}")
        width = max([len(f"{x['external_id']} {x['title'] or ''}"[:40]) for x in res["before"]] + [6])
        for i in range(max(len(res["before"]), len(res["after"]))):
            b = res["before"][i] if i < len(res["before"]) else None
            a = res["after"][i] if i < len(res["after"]) else None
            left = f"{b['external_id']} {b['title'] or ''}"[:40] if b else ""
            right = f"{a['external_id']} {a['title'] or ''}"[:40] if a else ""
            flag = " +" if a and a["external_id"] in res["entered"] else ""
            click.echo(f"  {i + 1:>3}. {left:<{width}}  ->  {right}{flag}")


@click.command("why-not")
@click.argument("item")
@click.option("--placement", default="pdp_similar", show_default=True)
@click.option("--context-item", default=None, help="The product page the list is shown on (external id).")
@click.option("--context-user", default=None, help="The shopper the list is shown to (external id).")
@click.option("-k", "k", type=click.IntRange(1, 100), default=10, show_default=True)
@click.pass_context
def why_not(ctx, item, placement, context_item, context_user, k):
    """Why ITEM is not in a placement's top k for a context (recs.why_not)."""
    from pgrecs import rules as r
    from pgrecs.errors import PgrecsError

    if (context_item is None) == (context_user is None):
        raise PgrecsError("give one context: --context-item ID or --context-user ID")
    with _connect(ctx) as conn:
        rows = r.why_not(conn, item, placement, context_item=context_item, context_user=context_user, k=k)
    for row in rows:
        click.echo(f"{row['reason']}: {row['detail']}")


COMMANDS = [rules, why_not]
