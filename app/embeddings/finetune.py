"""Domain fine-tuning of an embedding model on the shop's own logs (`pgrecs models finetune`).

1. Pairs: pgrecs.finetune_pairs mines them in SQL from the events before the cut-off (items in
   one basket or session, consecutive steps of one user, items engaged by one user), capped per
   item, both sides with the composed text `pgrecs embed` embeds.
2. Optional hard negatives: for each pair, an item of the anchor's category that the base model
   finds similar to the anchor but that no user engaged with together with it, mined by
   sentence-transformers' `mine_hard_negatives` with a relative margin below the positive.
3. Training: sentence-transformers' trainer with MultipleNegativesRankingLoss (in-batch
   negatives; the no-duplicates batch sampler keeps an item's text from being its own negative),
   seeded, on a GPU when torch sees one, else on the CPU.
4. Weight-space ensembling: the saved weights are base + mix x (fine-tuned - base); mix < 1
   keeps part of what the base model knows (chosen on validation, see Recipe).
5. The model is saved under PGRECS_HOME/models/NAME and registered as a candidate, with its
   lineage (base, window, pair counts, hyperparameters, training time, library versions).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pgrecs.errors import PgrecsError

SOURCES = ("basket", "sequence", "coengagement")
# fewer pairs than this do not make a training set: a handful of batches moves the model at random
MIN_PAIRS = 100
LIBRARIES = ("sentence-transformers", "transformers", "torch", "datasets", "accelerate")


@dataclass(frozen=True)
class Recipe:
    """What is mined and how it is trained. The defaults are the best recipe on validation
    (benchmarks/results/finetune_recipes.json, UCI Online Retail: NDCG@10 x1.08 with the 95%
    interval of the paired difference above zero, cold-start HR@10 not lower): a short, hot run
    (2,000 pairs, one epoch at 1e-4) mixed back to a quarter of its move away from the base model;
    the fine-tuned weights alone (mix 1) were worse than the base."""

    sources: tuple[str, ...] = SOURCES
    max_pairs: int = 2000
    per_item: int = 5
    epochs: int = 1
    max_seq_length: int = 128
    learning_rate: float = 1e-4
    batch_size: int = 32
    warmup_ratio: float = 0.1
    hard_negatives: bool = False
    negative_margin: float = 0.05
    mix: float = 0.25
    seed: int = 0

    def check(self) -> None:
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown or not self.sources:
            raise PgrecsError(f"pair sources must be among {', '.join(SOURCES)}, not {', '.join(unknown) or 'none'}")
        if not 0.0 <= self.mix <= 1.0:
            raise PgrecsError(f"--mix must be between 0 and 1, not {self.mix}")


@dataclass
class Pairs:
    anchors: list[str]
    positives: list[str]
    sources: list[str]
    anchor_ids: list[int]
    positive_ids: list[int]
    negatives: list[str] | None = None
    negative_ids: list[int] | None = None

    def __len__(self) -> int:
        return len(self.anchors)

    def by_source(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.sources:
            out[s] = out.get(s, 0) + 1
        return out


@dataclass
class Window:
    before: datetime | None
    events: int
    first_event: datetime | None
    last_event: datetime | None

    def as_dict(self) -> dict:
        iso = lambda d: d.isoformat() if d else None  # noqa: E731
        return {"before": iso(self.before), "events": self.events, "first_event": iso(self.first_event),
                "last_event": iso(self.last_event)}


@dataclass
class Trained:
    model: object
    steps: int
    seconds: float
    device: str
    final_loss: float | None = None
    extra: dict = field(default_factory=dict)


def training_window(conn, before: datetime | None) -> Window:
    """The positive events fine-tuning may learn from: a clear error when there are none."""
    events, first, last = conn.execute(
        """
        select count(*), min(e.occurred_at), max(e.occurred_at)
        from pgrecs.events as e
        inner join pgrecs.event_types as et on et.event_type = e.event_type
        where e.tenant_id = pgrecs.current_tenant()
          and et.default_weight > 0
          and (%(before)s::timestamptz is null or e.occurred_at < %(before)s::timestamptz)
        """, {"before": before}).fetchone()
    if events == 0:
        where = f" before {before.date().isoformat()}" if before else ""
        raise PgrecsError(f"no positive events{where}: nothing to fine-tune on (load events or move --before)")
    return Window(before, events, first, last)


def mine_pairs(conn, before: datetime | None, recipe: Recipe) -> Pairs:
    rows = conn.execute(
        """
        select p.anchor_item_id, p.positive_item_id, p.source, p.anchor_text, p.positive_text
        from pgrecs.finetune_pairs(before => %s, sources => %s, per_item => %s, max_pairs => %s) as p
        """, (before, list(recipe.sources), recipe.per_item, recipe.max_pairs)).fetchall()
    return Pairs(anchors=[r[3] for r in rows], positives=[r[4] for r in rows], sources=[r[2] for r in rows],
                 anchor_ids=[r[0] for r in rows], positive_ids=[r[1] for r in rows])


def add_hard_negatives(conn, model, pairs: Pairs, before: datetime | None, recipe: Recipe,
                       candidates: int = 10) -> int:
    """Give each pair one hard negative: among the base model's nearest texts to the anchor
    (mine_hard_negatives, `candidates` per pair, at least `negative_margin` (relative) below the
    positive's similarity), the first of the anchor's top-level category that no user engaged with
    together with the anchor before the cut-off. Pairs without one are dropped; returns how many
    have one."""
    from datasets import Dataset
    from sentence_transformers import mine_hard_negatives

    catalog = conn.execute(
        """
        select i.item_id, t.txt, coalesce(i.category_path[1], '')
        from pgrecs.items as i
        cross join lateral (
            select pgrecs.compose_item_text(i.title, i.description, i.brand, i.category_path, i.attributes) as txt
        ) as t
        where i.tenant_id = pgrecs.current_tenant() and i.active and pgrecs.item_embed_problem(t.txt, i.embed_override) is null
        order by i.item_id
        """).fetchall()
    ids_of_text: dict[str, list[int]] = {}
    category = {}
    for item_id, text, cat in catalog:
        ids_of_text.setdefault(text, []).append(item_id)
        category[item_id] = cat
    mined = mine_hard_negatives(
        Dataset.from_dict({"anchor": pairs.anchors, "positive": pairs.positives}), model,
        corpus=list(ids_of_text), relative_margin=recipe.negative_margin, num_negatives=candidates,
        sampling_strategy="top", output_format="triplet", batch_size=64, verbose=False)
    # one triplet per candidate left after the margin, nearest first
    by_pair: dict[tuple[str, str], list[str]] = {}
    for row in mined:
        by_pair.setdefault((row["anchor"], row["positive"]), []).append(row["negative"])
    options = []
    for anchor_id, anchor, positive in zip(pairs.anchor_ids, pairs.anchors, pairs.positives):
        texts = by_pair.get((anchor, positive), [])
        options.append([(anchor_id, n, t) for t in texts for n in ids_of_text[t]
                        if category[n] == category[anchor_id] and n != anchor_id])
    flat = [(a, n) for opts in options for a, n, _ in opts]
    engaged = _co_engaged(conn, before, flat)
    keep, negatives, negative_ids = [], [], []
    for index, opts in enumerate(options):
        for anchor_id, negative_id, text in opts:
            if (anchor_id, negative_id) not in engaged:
                keep.append(index)
                negatives.append(text)
                negative_ids.append(negative_id)
                break
    for name in ("anchors", "positives", "sources", "anchor_ids", "positive_ids"):
        values = getattr(pairs, name)
        setattr(pairs, name, [values[i] for i in keep])
    pairs.negatives, pairs.negative_ids = negatives, negative_ids
    return len(keep)


def _co_engaged(conn, before: datetime | None, pairs: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """The (item, other) pairs some user engaged with both of (positive events before the cut-off)."""
    if not pairs:
        return set()
    rows = conn.execute(
        """
        with candidates as (
            select distinct c.a, c.b from unnest(%(a)s::bigint[], %(b)s::bigint[]) as c (a, b)
        ),
        engaged as (
            select distinct e.user_id, e.item_id
            from pgrecs.events as e
            inner join pgrecs.event_types as et on et.event_type = e.event_type
            where e.tenant_id = pgrecs.current_tenant()
              and et.default_weight > 0
              and (%(before)s::timestamptz is null or e.occurred_at < %(before)s::timestamptz)
              and e.item_id in (select a from candidates union select b from candidates)
        )
        select c.a, c.b
        from candidates as c
        where exists (
            select 1
            from engaged as ea
            inner join engaged as eb on eb.user_id = ea.user_id
            where ea.item_id = c.a and eb.item_id = c.b
        )
        """, {"a": [p[0] for p in pairs], "b": [p[1] for p in pairs], "before": before}).fetchall()
    return {(a, b) for a, b in rows}


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def train(base_path: Path, pairs: Pairs, recipe: Recipe, progress: bool = True) -> Trained:
    """Fine-tune the sentence-transformers model in base_path on the pairs; returns the model
    with its weights mixed with the base's (recipe.mix)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from transformers import set_seed

    set_seed(recipe.seed)
    where = device()
    model = SentenceTransformer(str(base_path), device=where, local_files_only=True)
    embed_length = model.max_seq_length
    base_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.max_seq_length = min(recipe.max_seq_length, embed_length)
    columns = {"anchor": pairs.anchors, "positive": pairs.positives}
    if pairs.negatives is not None:
        columns["negative"] = pairs.negatives
    with tempfile.TemporaryDirectory(prefix="pgrecs-finetune-") as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch,
            num_train_epochs=recipe.epochs,
            per_device_train_batch_size=recipe.batch_size,
            learning_rate=recipe.learning_rate,
            warmup_steps=recipe.warmup_ratio,  # a float below 1: the share of the steps
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            seed=recipe.seed,
            data_seed=recipe.seed,
            use_cpu=where == "cpu",
            save_strategy="no",
            report_to="none",
            logging_strategy="steps",
            logging_steps=max(1, len(pairs) // recipe.batch_size // 10),
            disable_tqdm=not progress,
            dataloader_num_workers=0,
        )
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(columns),
                                             loss=MultipleNegativesRankingLoss(model))
        started = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - started
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    mix_weights(model, base_state, recipe.mix)
    # embedding reads the whole text the base model read; training only the first max_seq_length tokens
    model.max_seq_length = embed_length
    return Trained(model, steps=int(output.global_step), seconds=seconds, device=where,
                   final_loss=float(losses[-1]) if losses else None)


def mix_weights(model, base_state: dict, mix: float) -> None:
    """Weight-space ensembling: every parameter becomes base + mix x (fine-tuned - base)."""
    if mix >= 1.0:
        return
    import torch

    state = model.state_dict()
    with torch.no_grad():
        for key, value in state.items():
            if value.is_floating_point():
                value.copy_(base_state[key].to(value.device) + mix * (value - base_state[key].to(value.device)))


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def lineage(base, window: Window, pairs: Pairs, recipe: Recipe, trained: Trained, tenant: str) -> dict:
    return {
        "base_model": {"name": base.name, "model_id": base.model_id, "source": base.source, "version": base.version},
        "tenant": tenant,
        "window": window.as_dict(),
        "pairs": {"total": len(pairs), "by_source": pairs.by_source(),
                  "with_hard_negative": len(pairs.negatives or [])},
        "hyperparameters": {**asdict(recipe), "sources": list(recipe.sources), "loss": "MultipleNegativesRankingLoss",
                            "batch_sampler": "no_duplicates"},
        "training": {"seconds": round(trained.seconds, 2), "steps": trained.steps, "device": trained.device,
                     "pairs_per_second": round(len(pairs) * recipe.epochs / trained.seconds, 2) if trained.seconds else None,
                     "final_loss": trained.final_loss},
        "libraries": library_versions(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def finetune(conn, base_name: str, name: str, before: datetime | None, recipe: Recipe, home: Path,
             progress=None, show_bar: bool = True, pairs: Pairs | None = None):
    """Mine (unless `pairs` were mined already, from the same window and recipe), train, save under
    home/models/NAME and register NAME as a candidate model with its lineage. Returns (spec, lineage)."""
    from pgrecs.embeddings.models import is_static_model, load_spec, register_model, resolve_source

    def say(message: str) -> None:
        if progress:
            progress(message)

    recipe.check()
    if conn.execute("select 1 from pgrecs.embedding_models where name = %s", (name,)).fetchone():
        raise PgrecsError(f"a model named {name!r} is already registered; choose another --name")
    base = load_spec(conn, base_name)
    base_path = resolve_source(base.source)
    if is_static_model(base_path):
        raise PgrecsError(f"model {base_name!r} is a static model; fine-tuning needs a sentence-transformers model")
    window = training_window(conn, before)
    if pairs is None:
        pairs = mine_pairs(conn, before, recipe)
    if len(pairs) < MIN_PAIRS:
        raise PgrecsError(f"only {len(pairs)} training pairs in the window (at least {MIN_PAIRS} needed): "
                          "widen the window, add --sources or raise --per-item")
    say(f"{len(pairs)} pairs from {window.events} events ({', '.join(f'{k} {v}' for k, v in pairs.by_source().items())})")
    if recipe.hard_negatives:
        from sentence_transformers import SentenceTransformer

        miner = SentenceTransformer(str(base_path), device=device(), local_files_only=True)
        kept = add_hard_negatives(conn, miner, pairs, before, recipe)
        if kept < MIN_PAIRS:
            raise PgrecsError(f"only {kept} pairs have a hard negative (at least {MIN_PAIRS} needed): "
                              "train without --hard-negatives")
        say(f"{kept} pairs with a hard negative")
    conn.commit()  # no transaction stays open through the training
    say(f"training on {device()}: {recipe.epochs} epoch(s) of {len(pairs)} pairs, batch {recipe.batch_size}")
    trained = train(base_path, pairs, recipe, progress=show_bar)
    target = home / "models" / name
    target.mkdir(parents=True, exist_ok=True)
    trained.model.save(str(target))
    record = lineage(base, window, pairs, recipe, trained, conn.execute("select pgrecs.current_tenant()").fetchone()[0])
    (target / "pgrecs_lineage.json").write_text(json.dumps(record, indent=2) + "\n")
    spec = register_model(conn, name, str(target), version=f"finetuned-{record['created_at'][:10]}",
                          tier=base.tier, precision=base.compute_precision, state="candidate",
                          base_model_id=base.model_id, lineage=record)
    return spec, record

