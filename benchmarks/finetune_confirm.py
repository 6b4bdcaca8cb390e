"""Confirm a fine-tuning recipe on test, through the gate (`pgrecs models evaluate`).

    python -m benchmarks.finetune_confirm --dataset NAME --prepare      # print the prepared database's URL
    python -m benchmarks.finetune_confirm --dataset NAME --recipe-from DATASET [--label L] [--max-users N]
    python -m benchmarks.finetune_confirm --dataset NAME [--label L] [--max-users N] [finetune options...]
    ... --train-only     prepare, fine-tune and embed only (the gate on the next call, reusing the model)

Each shared dataset gets a database `finetune_<dataset>` on the embedded server under
$PGRECS_HOME (default /tmp/pgrecs_finetune): exported, migrated, loaded and embedded with the
default model once (the recipe search, `python -m benchmarks.finetune_recipes --db-url URL`, runs on
it too). On every run its `home_for_you` placement is set to the configuration tuned by the
evaluation of record (`tuned` in benchmarks/results/evaluation_<dataset>_time_split.json), so the
gate's hybrid is the tuned hybrid. The test cut-off is that evaluation's (the 80th percentile of
event times, `pgrecs evaluate --protocol time-split`): the model is fine-tuned on the events before
it only (`pgrecs models finetune --before`), embedded (`pgrecs embed --model`) and judged by
`pgrecs models evaluate` on the events after it.

The recipe is given as `pgrecs models finetune` options, or taken from the validation search:
`--recipe-from DATASET` uses the run and weight mix that validation chose on DATASET
(benchmarks.finetune_recipes.chosen_recipe; the test period is never read to choose it).

Writes benchmarks/results/finetune_gate_<dataset>.json: the evaluation with the gate's verdict,
the recipe and the validation run that chose it, pair counts, training time and device, and the
tuned placement the hybrid used. A re-run reuses a model already trained under the same name when
its recipe and window match, and refuses one that differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from click.testing import CliRunner

from benchmarks.finetune_recipes import OUT as RECIPES
from benchmarks.finetune_recipes import chosen_recipe
from benchmarks.run import RESULTS, machine_info
from pgrecs import datasets
from pgrecs.cli import main as cli
from pgrecs.db import connect
from pgrecs.evaluation import splits
from pgrecs.evaluation.data import load_catalog, load_interactions

TENANT, PLACEMENT = "default", "home_for_you"
# Recipe fields `pgrecs models finetune` takes as options (the others must keep their defaults)
OPTIONS = {"max_pairs": "--max-pairs", "per_item": "--per-item", "epochs": "--epochs",
           "max_seq_length": "--max-seq-length", "learning_rate": "--learning-rate", "batch_size": "--batch-size",
           "mix": "--mix", "seed": "--seed"}


def invoke(url: str, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--db-url", url, *args], catch_exceptions=False)
    if result.exit_code != 0:
        raise SystemExit(f"pgrecs {' '.join(args)} failed: {result.output[-2000:]}")
    return result.stdout


def recipe_options(recipe: dict) -> list[str]:
    """A recipe of the validation search as `pgrecs models finetune` options."""
    from dataclasses import asdict

    from pgrecs.embeddings.finetune import Recipe

    defaults = asdict(Recipe())
    fixed = [k for k in defaults if k not in OPTIONS and k not in ("sources", "hard_negatives")
             and recipe.get(k, defaults[k]) != defaults[k]]
    if fixed:
        raise SystemExit(f"the recipe sets {', '.join(fixed)}, which `pgrecs models finetune` does not take")
    options = ["--sources", ",".join(recipe["sources"]),
               "--hard-negatives" if recipe["hard_negatives"] else "--no-hard-negatives"]
    for field, option in OPTIONS.items():
        options += [option, f"{recipe[field]:g}" if isinstance(recipe[field], float) else str(recipe[field])]
    return options


def requested_recipe(name: str, before: str, options: list[str]) -> dict:
    """The hyperparameters `pgrecs models finetune` would record for these options."""
    command = cli.commands["models"].commands["finetune"]
    params = command.make_context("finetune", ["--name", name, "--before", before, *options]).params
    recipe = {k: params[k] for k in OPTIONS}
    recipe["sources"] = [s.strip() for s in params["sources"].split(",") if s.strip()]
    recipe["hard_negatives"] = params["hard_negatives"]
    return recipe


def prepared_database(dataset: str, data_root: Path | None) -> str:
    """The dataset's database, loaded and embedded with the default model (once)."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from pgrecs import embedded

    home = Path(os.environ.setdefault("PGRECS_HOME", "/tmp/pgrecs_finetune"))
    server = embedded.start(home / "pgdata")
    dbname = f"finetune_{dataset}"
    url = make_conninfo(**{**conninfo_to_dict(server), "dbname": dbname})
    with psycopg.connect(server, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone()
    if exists:
        with psycopg.connect(url) as conn:
            ready = conn.execute("select 1 from pg_namespace where nspname = 'pgrecs'").fetchone() and conn.execute(
                "select count(*) > 0 from pgrecs.item_neighbors where signal = 'semantic'").fetchone()[0]
        if ready:
            return url
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    folder = home / "work" / dataset
    datasets.export(dataset, folder, data_root)
    invoke(url, "migrate")
    for kind in ("items", "events"):
        invoke(url, "load", kind, str(folder / f"{kind}.jsonl.gz"), "-q")
    invoke(url, "embed")
    return url


def evaluation_of_record(dataset: str) -> tuple[dict, str]:
    path = RESULTS / f"evaluation_{dataset}_time_split.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run the evaluation of record first (benchmarks/evaluation.sh)")
    return json.loads(path.read_text()), hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", required=True, choices=datasets.DATASETS)
    parser.add_argument("--prepare", action="store_true", help="prepare the database, print its URL and exit")
    parser.add_argument("--label", default="default", help="names the model: finetuned-<dataset>-<label>")
    parser.add_argument("--recipe-from", choices=datasets.DATASETS, default=None,
                        help="use the recipe validation chose on this dataset (benchmarks/results/finetune_recipes.json)")
    parser.add_argument("--train-only", action="store_true",
                        help="prepare, fine-tune and embed the model, then exit (the gate runs on the next call)")
    parser.add_argument("--max-users", type=int, default=None)
    parser.add_argument("--data-root", type=Path, default=None, help=f"the shared datasets (default {datasets.SHARED_DATA})")
    args, finetune_options = parser.parse_known_args()
    url = prepared_database(args.dataset, args.data_root)
    if args.prepare:
        print(url)
        return 0
    name = f"finetuned-{args.dataset}-{args.label}"

    chosen = None
    if args.recipe_from:
        chosen = chosen_recipe(json.loads(RECIPES.read_text()) if RECIPES.exists() else {}, args.recipe_from)
        if chosen is None:
            raise SystemExit(f"no validation run on {args.recipe_from} in {RECIPES}")
        finetune_options = recipe_options(chosen["recipe"]) + finetune_options

    record_of, record_sha = evaluation_of_record(args.dataset)
    tuned = record_of.get("tuned")
    from pgrecs.evaluation.runner import write_tuned

    with connect(url) as conn:
        if tuned:  # every run: the evaluation of record may have been re-measured since the last one
            write_tuned(conn, TENANT, PLACEMENT, tuned)
        catalog = load_catalog(conn, TENANT, with_embeddings=False)
        cutoff = splits.time_split(load_interactions(conn, TENANT, catalog)).cutoff
        lineage = conn.execute("select lineage from pgrecs.embedding_models where name = %s", (name,)).fetchone()
        placement = conn.execute(
            "select p.weights, p.pool_sizes, p.fusion, p.mmr_lambda from pgrecs.placements as p "
            "where p.tenant_id = %s and p.placement = %s", (TENANT, PLACEMENT)).fetchone()
    if record_of["split"]["cutoff"] != cutoff:
        raise SystemExit(f"the test cut-off here ({cutoff}) is not the evaluation of record's "
                         f"({record_of['split']['cutoff']}): the loaded events differ from the evaluated ones")
    before = datetime.fromtimestamp(cutoff, tz=timezone.utc).isoformat()
    wanted = requested_recipe(name, before, finetune_options)
    if lineage is not None:
        have = {k: lineage[0]["hyperparameters"][k] for k in wanted}
        trained_before = lineage[0]["window"]["before"]
        if have != wanted or trained_before is None or datetime.fromisoformat(trained_before) != datetime.fromtimestamp(
                cutoff, tz=timezone.utc):
            raise SystemExit(f"model {name} exists with another recipe or window ({have}, before "
                             f"{lineage[0]['window']['before']}): choose another --label")
        print(f"{name} is trained already with this recipe: embedding and evaluating it", flush=True)

    started = time.time()
    load_before = os.getloadavg()[0]
    if lineage is None:
        invoke(url, "models", "finetune", "--name", name, "--before", before, "--quiet", *finetune_options)
    invoke(url, "embed", "--model", name)
    if args.train_only:
        print(f"{name}: trained and embedded; run again without --train-only for the gate")
        return 0
    evaluate = ["models", "evaluate", name, "--placement", PLACEMENT, "--json"]
    if args.max_users:
        evaluate += ["--max-users", str(args.max_users)]
    evaluation = json.loads(invoke(url, *evaluate))
    with connect(url) as conn:
        lineage = conn.execute("select lineage from pgrecs.embedding_models where name = %s", (name,)).fetchone()[0]
    record = {
        "dataset": args.dataset,
        "model": name,
        "test_cutoff": before,
        "recipe": lineage["hyperparameters"],
        "recipe_options": finetune_options,
        "chosen_on_validation": chosen,
        "pairs": lineage["pairs"],
        "window": lineage["window"],
        "training": lineage["training"],
        "hybrid": {"placement": PLACEMENT, "weights": placement[0], "pool_sizes": placement[1], "fusion": placement[2],
                   "mmr_lambda": placement[3], "tuned": tuned,
                   "evaluation_of_record": f"evaluation_{args.dataset}_time_split.json", "sha256_16": record_sha},
        "evaluation": evaluation,
        "seconds": round(time.time() - started, 1),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
    }
    (RESULTS / f"finetune_gate_{args.dataset}.json").write_text(json.dumps(record, indent=2) + "\n")
    gate = evaluation["gate"]
    print(f"{name}: gate {'passed' if gate['passed'] else 'refused: ' + gate['reason']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
