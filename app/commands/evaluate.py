"""`pgrecs evaluate` (offline evaluation) and `pgrecs experiment` (online experiments)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pgrecs.cli import tenant_from, url_from
from pgrecs.errors import PgrecsError


def _parse_ks(value: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(v) for v in value.split(",") if v.strip()}))
    except ValueError:
        raise click.BadParameter("use a comma list of integers, e.g. 5,10,20") from None
    if not ks or min(ks) < 1 or max(ks) > 100:
        raise click.BadParameter("k values must be between 1 and 100")
    return ks


def _parse_weights(value: str | None) -> dict[str, float] | None:
    if not value:
        return None
    out = {}
    for part in value.split(","):
        name, sep, num = part.partition("=")
        try:
            out[name.strip()] = float(num)
        except ValueError:
            raise click.BadParameter(f"bad weight {part!r}; use signal=number,...") from None
        if not sep or not name.strip():
            raise click.BadParameter(f"bad weight {part!r}; use signal=number,...")
    return out


def _parse_cutoff(value: str | None) -> float | None:
    if not value:
        return None
    from datetime import datetime, timezone

    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"bad cut-off {value!r}; use an ISO date such as 2017-01-01") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


@click.command()
@click.option("--protocol", type=click.Choice(["leave-last-out", "time-split"]), default="leave-last-out", show_default=True,
              help="leave-last-out: each user's whole last tie group (one timestamp, or session) is held out; "
                   "time-split: events from --cutoff on are held out, rankings limited to items known then.")
@click.option("--cutoff", default=None, help="time-split cut-off (ISO date); default: the 80th percentile of event times.")
@click.option("--min-history", type=int, default=1, show_default=True,
              help="distinct training items a test user needs (time-split: 0 keeps new users).")
@click.option("--k", "ks", default="5,10,20", show_default=True, help="cut-offs for the ranking metrics.")
@click.option("--strategies", default=None,
              help="comma list (default all): random, popularity, cooccurrence, sequence, ease, semantic, hybrid:<placement> "
                   "or hybrid:*, weights, tuned, ease:plain (EASE without the text side information), "
                   "ease:blocks (EASE by blocks, the solver above the dense limit), "
                   "cooccurrence:raw_counts, semantic:<model>, baseline:popularity, baseline:item_knn, "
                   "baseline:ease, baseline:als.")
@click.option("--weights", default=None, help="extra strategy with these weights, e.g. semantic=0.5,cooccurrence=1.")
@click.option("--tune", is_flag=True, help="search weights and MMR lambda on a validation split; write the best into --tune-placement.")
@click.option("--tune-placement", default="home_for_you", show_default=True)
@click.option("--tune-users", type=int, default=500, show_default=True, help="validation users sampled for tuning.")
@click.option("--tune-trials", type=int, default=60, show_default=True,
              help="most placement configurations tried on the validation split.")
@click.option("--tune-folds", type=click.IntRange(1, 5), default=1, show_default=True,
              help="nested validation folds (the last, second-last, ... training interaction) averaged by tuning.")
@click.option("--tune-signals/--no-tune-signals", default=True, show_default=True,
              help="with --tune: also choose the EASE lambda and the co-occurrence shrinkage on validation "
                   "(reported as `pgrecs refresh` parameters).")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write a compact JSON summary (headline metrics per strategy) to this file.")
@click.option("--max-users", type=int, default=None, help="evaluate a seeded sample of test users (default: all).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--dataset", default=None, help="label stored with the run and shown in the report.")
@click.option("--ease-block-size", type=click.IntRange(min=2), default=1000, show_default=True,
              help="ease:blocks: items per block (as `pgrecs refresh --ease-block-size`).")
@click.option("--ease-halo-size", type=click.IntRange(min=0), default=1000, show_default=True,
              help="ease:blocks: halo items per block (as `pgrecs refresh --ease-halo-size`).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("evaluation"), show_default=True)
@click.pass_context
def evaluate(ctx, protocol, cutoff, min_history, ks, strategies, weights, tune, tune_placement, tune_users,
             tune_trials, tune_folds, tune_signals, summary_path, max_users, seed, dataset, ease_block_size,
             ease_halo_size, out_dir):
    """Offline evaluation through the serving SQL, with external baselines; writes JSON + HTML."""
    from pgrecs.evaluation import report as report_mod
    from pgrecs.evaluation.runner import Options, evaluate as run

    opts = Options(protocol=protocol, cutoff=_parse_cutoff(cutoff), min_history=min_history, ks=_parse_ks(ks),
                   strategies=tuple(s.strip() for s in strategies.split(",")) if strategies else None,
                   weights=_parse_weights(weights), tune=tune, tune_placement=tune_placement,
                   tune_users=tune_users, tune_trials=tune_trials, tune_folds=tune_folds, tune_signals=tune_signals, max_users=max_users, seed=seed, dataset=dataset,
                   ease_block_size=ease_block_size, ease_halo_size=ease_halo_size,
                   progress=lambda m: click.echo(m, err=True))
    result = run(url_from(ctx), tenant_from(ctx), opts)
    json_path, html_path = report_mod.write(result, out_dir)
    if summary_path:
        report_mod.write_summary(result, summary_path)
    click.echo(report_mod.markdown_table(result))
    click.echo(f"run {result['run_id']}: wrote {json_path} and {html_path}")


@click.group()
def experiment():
    """Online A/B experiments: variants are placements, users assigned by hashing."""


@experiment.command("create")
@click.argument("name")
@click.option("--variant", "variants", multiple=True, required=True,
              help="NAME=PLACEMENT[:ALLOCATION], repeat per variant; the first is the control.")
@click.option("--description", default=None)
@click.option("--salt", default=None, help="hash salt (default: the experiment name).")
@click.pass_context
def experiment_create(ctx, name, variants, description, salt):
    """Create a running experiment."""
    from pgrecs.db import connect
    from pgrecs.evaluation import experiments

    parsed = []
    for v in variants:
        vname, sep, rest = v.partition("=")
        placement, _, alloc = rest.partition(":")
        if not sep or not vname or not placement:
            raise PgrecsError(f"bad --variant {v!r}; use NAME=PLACEMENT[:ALLOCATION]")
        try:
            parsed.append((vname, placement, float(alloc) if alloc else 1.0))
        except ValueError:
            raise PgrecsError(f"bad allocation in --variant {v!r}") from None
    with connect(url_from(ctx), tenant=tenant_from(ctx)) as conn:
        eid = experiments.create(conn, tenant_from(ctx), name, parsed, description, salt)
    click.echo(f"experiment {name} ({eid}) running with variants {', '.join(p[0] for p in parsed)}")


@experiment.command("stop")
@click.argument("name")
@click.pass_context
def experiment_stop(ctx, name):
    """Stop an experiment (its window closes now)."""
    from pgrecs.db import connect
    from pgrecs.evaluation import experiments

    with connect(url_from(ctx), tenant=tenant_from(ctx)) as conn:
        experiments.stop(conn, tenant_from(ctx), name)
    click.echo(f"experiment {name} stopped")


def _ci(v, lo, hi, fmt="{:.4f}"):
    if v is None:
        return "-"
    return f"{fmt.format(v)} [{fmt.format(lo)}, {fmt.format(hi)}]" if lo is not None else fmt.format(v)


@experiment.command("report")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table.")
@click.pass_context
def experiment_report(ctx, name, as_json):
    """Per-variant CTR, conversion, revenue per user and AOV with 95% intervals, and lift vs control."""
    from pgrecs.db import connect
    from pgrecs.evaluation import experiments

    with connect(url_from(ctx), tenant=tenant_from(ctx)) as conn:
        rep = experiments.report(conn, tenant_from(ctx), name)
    if as_json:
        click.echo(json.dumps(rep, indent=2, default=float))
        return
    click.echo(f"experiment {name} (95% intervals; users = exposed users)")
    for v in rep["variants"]:
        click.echo(f"- {v['variant']} ({v['placement']}{', control' if v['is_control'] else ''}): users {v['users']}, "
                   f"impressions {v['impressions']}, clicks {v['clicks']}")
        click.echo(f"    CTR {_ci(v['ctr'], v['ctr_low'], v['ctr_high'])}  conversion "
                   f"{_ci(v['conversion'], v['conversion_low'], v['conversion_high'])}")
        click.echo(f"    revenue/user {_ci(v['revenue_per_user'], v['revenue_per_user_low'], v['revenue_per_user_high'], '{:.2f}')}"
                   f"  AOV {_ci(v['average_order_value'], v['average_order_value_low'], v['average_order_value_high'], '{:.2f}')}")
        for metric, d in (v.get("vs_control") or {}).items():
            if d:
                click.echo(f"    vs control {metric}: {d['diff']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]")


COMMANDS = [evaluate, experiment]
