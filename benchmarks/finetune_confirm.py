"""Confirm a fine-tuning recipe on test, through the gate (`pgrecs models evaluate`).

    python -m benchmarks.finetune_confirm --dataset NAME --prepare      # print the prepared database's URL
    python -m benchmarks.finetune_confirm --dataset NAME [--label L] [--max-users N] [finetune options...]

Each shared dataset gets a database `finetune_<dataset>` on the embedded server under
$PGRECS_HOME (default /tmp/pgrecs_finetune): exported, migrated, loaded and embedded with the
default model once (the recipe search, `python -m benchmarks.finetune_recipes --db-url URL`, runs on
it too), and its `home_for_you` placement set to the configuration tuned by the evaluation of
record (`tuned` in benchmarks/results/evaluation_<dataset>_time_split.json), so the gate's hybrid is
the tuned hybrid. The test cut-off is the one `pgrecs evaluate --protocol time-split` uses (the
80th percentile of event times): the model is fine-tuned on the events before it only
(`pgrecs models finetune --before`), embedded (`pgrecs embed --model`) and judged by
`pgrecs models evaluate` on the events after it. Writes benchmarks/results/finetune_gate_<dataset>.json:
the evaluation with the gate's verdict, the recipe, pair counts, training time and device.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from click.testing import CliRunner

from benchmarks.run import RESULTS, machine_info
from pgrecs.cli import main as cli
from pgrecs.db import connect
from pgrecs.evaluation import splits
from pgrecs.evaluation.data import load_catalog, load_interactions


def invoke(url: str, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--db-url", url, *args], catch_exceptions=False)
    if result.exit_code != 0:
        raise SystemExit(f"pgrecs {' '.join(args)} failed: {result.output[-2000:]}")
    return result.stdout


def prepared_database(dataset: str) -> str:
    """The dataset's database, loaded, embedded with the default model and with the tuned hybrid."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from pgrecs import datasets, embedded
    from pgrecs.evaluation.runner import write_tuned

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
    datasets.export(dataset, folder)
    invoke(url, "migrate")
    for kind in ("items", "events"):
        invoke(url, "load", kind, str(folder / f"{kind}.jsonl.gz"), "-q")
    invoke(url, "embed")
    record = json.loads((RESULTS / f"evaluation_{dataset}_time_split.json").read_text())
    if record.get("tuned"):
        with connect(url) as conn:
            write_tuned(conn, "default", "home_for_you", record["tuned"])
    return url


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--prepare", action="store_true", help="prepare the database, print its URL and exit")
    parser.add_argument("--label", default="default", help="names the model: finetuned-<dataset>-<label>")
    parser.add_argument("--max-users", default=None)
    args, finetune_options = parser.parse_known_args()
    url = prepared_database(args.dataset)
    if args.prepare:
        print(url)
        return 0
    name = f"finetuned-{args.dataset}-{args.label}"

    with connect(url) as conn:
        catalog = load_catalog(conn, "default", with_embeddings=False)
        cutoff = splits.time_split(load_interactions(conn, "default", catalog)).cutoff
        registered = conn.execute("select 1 from pgrecs.embedding_models where name = %s", (name,)).fetchone()
        placement = conn.execute("select weights from pgrecs.placements where tenant_id = 'default' "
                                 "and placement = 'home_for_you'").fetchone()[0]
    before = datetime.fromtimestamp(cutoff, tz=timezone.utc).isoformat()
    started = time.time()
    load_before = os.getloadavg()[0]
    if registered is None:
        invoke(url, "models", "finetune", "--name", name, "--before", before, "--quiet", *finetune_options)
    invoke(url, "embed", "--model", name)
    evaluate = ["models", "evaluate", name, "--json"]
    if args.max_users:
        evaluate += ["--max-users", args.max_users]
    evaluation = json.loads(invoke(url, *evaluate))
    with connect(url) as conn:
        lineage = conn.execute("select lineage from pgrecs.embedding_models where name = %s", (name,)).fetchone()[0]
    record = {
        "dataset": args.dataset,
        "model": name,
        "test_cutoff": before,
        "hybrid_placement_weights": placement,
        "recipe": lineage["hyperparameters"],
        "pairs": lineage["pairs"],
        "training": lineage["training"],
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
