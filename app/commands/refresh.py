"""`pgrecs refresh` (dbt build + EASE + publish; `--cf`: EASE alone) and `pgrecs audit` (catalog metadata report)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pgrecs.cli import url_from
from pgrecs.errors import PgrecsError


def _parse_vars(pairs: tuple[str, ...]) -> dict:
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise PgrecsError(f"--var expects key=value, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


# dbt reports a model's success as the adapter's message ("SELECT 2917", "CREATE VIEW"), a test's
# as "pass"; these words start the statuses worth a line of their own
PROBLEM_STATUSES = ("error", "fail", "warn", "skip", "runtime error")


class _Progress:
    """A concise progress display on stderr: on a terminal one status line rewritten in place
    (step, node count, the node that just finished); elsewhere one line per finished step. Nodes
    that failed, warned or were skipped are listed under their step; verbose lists every node."""

    def __init__(self, verbose: bool = False) -> None:
        self.tty = sys.stderr.isatty()
        self.verbose = verbose
        self.name: str | None = None
        self.started = 0.0
        self.nodes = 0
        self.failed: list[str] = []

    def step(self, name: str) -> None:
        import time

        self.close()
        self.name, self.started, self.nodes = name, time.perf_counter(), 0

    def node(self, node, index: int, total: int) -> None:
        self.nodes += 1
        if self.verbose:
            prefix = "\r\033[K" if self.tty else ""
            click.echo(f"{prefix}  {node.status} {node.kind} {node.name} ({node.seconds:.1f}s)", err=True)
        elif str(node.status).lower().startswith(PROBLEM_STATUSES):
            self.failed.append(f"{node.status} {node.kind} {node.name}")
        if self.tty:
            where = f"{index}/{total}" if total else str(self.nodes)
            line = f"{self.name} [{where}] {node.name}"[:100]
            click.echo(f"\r\033[K{line}", err=True, nl=False)

    def close(self) -> None:
        import time

        if self.name is None:
            return
        counted = f", {self.nodes} nodes" if self.nodes else ""
        prefix = "\r\033[K" if self.tty else ""
        click.echo(f"{prefix}{self.name}: {time.perf_counter() - self.started:.1f}s{counted}", err=True)
        for failure in self.failed:
            click.echo(f"  {failure}", err=True)
        self.name, self.failed = None, []


@click.command()
@click.option("--full/--incremental", default=None,
              help="Recompute everything, or only what new events touched (default: incremental once a full refresh has run).")
@click.option("--ease/--no-ease", "ease", default=None,
              help="Recompute the EASE signal (default: on full refreshes only).")
@click.option("--sequence/--no-sequence", "sequence", default=None,
              help="Recompute the next-item lists (what users went on to after each item; default: on full refreshes only).")
@click.option("--ease-lambda", type=float, default=300.0, show_default=True, help="EASE L2 regularisation.")
@click.option("--ease-semantic-weight", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Weight of the default model's text embeddings as EASE side information "
                   "(0: plain EASE; above 0, embedded items without interactions join EASE too).")
@click.option("--ease-max-items", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="Largest EASE model (items with interactions or embeddings) solved densely; a larger one is "
                   "fitted by blocks, on its own schedule (--cf) unless --ease is given.")
@click.option("--ease-method", type=click.Choice(["auto", "dense", "blocks"]), default="auto", show_default=True,
              help="EASE solver: auto (dense up to --ease-max-items, blocks above), or one of them for every tenant.")
@click.option("--ease-block-size", type=click.IntRange(min=2), default=1000, show_default=True,
              help="EASE by blocks: items per block (each block is solved with its halo in one dense system).")
@click.option("--ease-halo-size", type=click.IntRange(min=0), default=1000, show_default=True,
              help="EASE by blocks: items outside a block, most connected to it, that predict its items too.")
@click.option("--ease-memory-limit", type=click.FloatRange(min=0, min_open=True), default=None, metavar="GIB",
              help="Refuse an EASE fit whose estimated peak memory exceeds this many GiB "
                   "(default: the memory available when the fit starts).")
@click.option("--cf", "cf_only", is_flag=True,
              help="Fit only the learned collaborative model (EASE, dense or by blocks) on the interactions of the "
                   "last refresh and publish its lists; no dbt build. Schedule it on its own (e.g. nightly).")
@click.option("--top-n", type=int, default=50, show_default=True, help="Neighbours kept per item and signal.")
@click.option("--var", "dbt_vars", multiple=True, metavar="KEY=VALUE",
              help="A dbt var, e.g. --var popularity_half_life_days=7 --var 'event_weights={purchase: 10}'.")
@click.option("--test/--no-test", "run_tests", default=True, show_default=True,
              help="Run the dbt data tests and unit tests (dbt build) or only the models (dbt run).")
@click.option("--cooccurrence-in-dbt", is_flag=True,
              help="Build co-occurrence with the dbt mart fct_item_cooccurrence (SQL; slower) instead of the "
                   "sparse matrix product in Python (same scores).")
@click.option("--quiet", is_flag=True, help="No progress display.")
@click.option("-v", "--verbose", is_flag=True, help="List every dbt model and test as it finishes.")
@click.pass_context
def refresh(ctx, full, ease, sequence, ease_lambda, ease_semantic_weight, ease_max_items, ease_method, ease_block_size,
            ease_halo_size, ease_memory_limit, cf_only, top_n, dbt_vars, run_tests, cooccurrence_in_dbt, quiet, verbose):
    """Rebuild the dbt marts and publish co-occurrence, next-item, EASE, popularity and quality signals."""
    from pgrecs.signals.ease_fit import EaseSettings
    from pgrecs.signals.refresh import refresh as run_refresh

    url = url_from(ctx)
    ease_settings = EaseSettings(lam=ease_lambda, semantic_weight=ease_semantic_weight, top_n=top_n,
                                 max_dense_items=ease_max_items, block_size=ease_block_size, halo_size=ease_halo_size,
                                 memory_limit_bytes=int(ease_memory_limit * 2**30) if ease_memory_limit else None,
                                 method=ease_method)
    if cf_only:
        _refresh_collaborative(url, ease_settings)
        return
    show = None if quiet else _Progress(verbose)
    try:
        report = run_refresh(url, full=full, ease=ease, sequence=sequence, ease_settings=ease_settings,
                             top_n=top_n, variables=_parse_vars(dbt_vars), run_tests=run_tests,
                             cooccurrence_in_dbt=cooccurrence_in_dbt, progress=show and show.node,
                             step=show and show.step)
    finally:
        if show:
            show.close()
    if not quiet and report.nodes:
        slow = ", ".join(f"{n.name} {n.seconds:.1f}s" for n in report.slowest(3))
        click.echo(f"slowest dbt nodes: {slow}", err=True)
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    for t in report.tenants:
        click.echo(
            f"{report.mode} refresh, tenant {t['tenant_id']}: {t['cooccurrence_lists']} co-occurrence lists "
            f"recomputed ({t['cooccurrence_rows']} rows), {t['sequence_rows']} next-item rows, {t['ease_rows']} EASE rows, "
            f"{t['signal_rows']} item signals")
    click.echo(f"done in {report.seconds:.1f}s (dbt {report.dbt_seconds:.1f}s: {report.models} models, "
               f"{report.tests} tests taking {report.test_seconds:.1f}s of dbt's threads; "
               f"co-occurrence {report.cooccurrence_seconds:.1f}s; EASE {report.ease_seconds:.1f}s; "
               f"publish {report.publish_seconds:.1f}s)")


def _refresh_collaborative(url: str, ease_settings) -> None:
    from pgrecs.signals.refresh import refresh_collaborative

    report = refresh_collaborative(url, ease_settings)
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    rows = {p["tenant_id"]: p["ease_rows"] for p in report.published}
    for fit in report.fits:
        click.echo(f"EASE ({fit.method}) for tenant {fit.tenant_id}: {fit.items:,} items, {fit.interactions:,} interactions,"
                   f" fitted in {fit.fit_seconds:.1f}s, peak memory {fit.peak_rss_bytes / 2**30:.2f} GiB,"
                   f" {rows.get(fit.tenant_id, 0):,} rows published")
    click.echo(f"done in {report.seconds:.1f}s")


@click.command()
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report to FILE (.html for the styled report with charts, anything else Markdown).")
@click.option("--worst", type=click.IntRange(0, 10_000), default=20, show_default=True,
              help="How many lowest-quality items to list.")
@click.option("--fix-first", type=click.IntRange(0, 10_000), default=20, show_default=True,
              help="How many items with findings to list first, most traffic (events) first.")
@click.option("--build/--no-build", default=True, show_default=True,
              help="Rebuild the audit models with dbt first.")
@click.pass_context
def audit(ctx, out, worst, fix_first, build):
    """Catalog metadata audit: summary, the items to fix first and the worst items (printed, and written with --out)."""
    from pgrecs import dbt
    from pgrecs.cli import tenant_from
    from pgrecs.console import audit_report
    from pgrecs.db import connect

    url = url_from(ctx)
    tenant = tenant_from(ctx)
    if build:
        dbt.run(url, "build", select="+fct_catalog_audit_summary")
    try:
        with connect(url, tenant=tenant) as conn:
            report = audit_report.audit_data(conn, tenant, worst, fix_first)
    except Exception as exc:
        if exc.__class__.__name__ == "UndefinedTable":
            raise PgrecsError("the audit marts do not exist yet: run `pgrecs audit` without --no-build") from exc
        raise
    if report is None:
        raise PgrecsError(f"tenant {tenant} has no items to audit")
    text = audit_report.render_markdown(report)
    click.echo(text)
    if out:
        out.write_text(audit_report.render_html(report) if out.suffix.lower() in (".html", ".htm") else text)
        click.echo(f"wrote {out}", err=True)


COMMANDS = [refresh, audit]
