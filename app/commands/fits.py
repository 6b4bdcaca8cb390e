"""`pgrecs models fits`: the lineage of the learned collaborative model (pgrecs.model_fits)."""

from __future__ import annotations

import json

import click

from pgrecs.cli import tenant_from, url_from


@click.command("fits")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True, help="Most recent fits shown.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every column) instead of a table.")
@click.pass_context
def fits(ctx, limit, as_json):
    """Fits of the learned collaborative model (EASE): when, on what data, how, at what cost."""
    from pgrecs.db import connect

    with connect(url_from(ctx), tenant=tenant_from(ctx)) as conn:
        cur = conn.execute(
            "select f.* from pgrecs.model_fits as f where f.tenant_id = %s order by f.finished_at desc, f.fit_id desc"
            " limit %s", (tenant_from(ctx), limit))
        names = [c.name for c in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("no fits yet: `pgrecs refresh` fits EASE (dense), `pgrecs refresh --cf` by blocks above the dense limit")
        return
    click.echo("fit\tfinished\tsignal\tmethod\tstatus\tevents<=\tusers\titems\tinteractions\tseconds\tpeak GiB\testimate GiB\tparameters")
    for r in rows:
        seconds = f"{r['fit_seconds']:.1f}" if r["fit_seconds"] is not None else "-"
        peak = f"{r['peak_rss_bytes'] / 2**30:.2f}" if r["peak_rss_bytes"] is not None else "-"
        click.echo(f"{r['fit_id']}\t{r['finished_at']:%Y-%m-%d %H:%M:%S}\t{r['signal']}\t{r['method']}\t{r['status']}\t"
                   f"{r['last_event_id']}\t{r['users']}\t{r['items']}\t{r['interactions']}\t{seconds}\t{peak}\t"
                   f"{r['estimated_bytes'] / 2**30:.2f}\t{json.dumps(r['parameters'], sort_keys=True)}")
