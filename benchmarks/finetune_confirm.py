"""Confirm a fine-tuning recipe on test, through the serving SQL.

    python -m benchmarks.finetune_confirm --db-url URL --dataset NAME [finetune options...]

The database holds one dataset, loaded and embedded with the default model. The test cut-off is
the one `pgrecs evaluate --protocol time-split` uses by default (the 80th percentile of event
times); the model is fine-tuned on the events before it only (`pgrecs models finetune --before`),
embedded (`pgrecs embed --model`), and scored against the default model by
`pgrecs evaluate --protocol time-split --cutoff T --strategies semantic,semantic:<model>`.
Writes benchmarks/results/finetune_confirm_<dataset>.json: both strategies' metrics per slice,
the cut-off and the model's lineage.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone

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
    return result.output


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--name", default=None, help="model name (default: finetuned-<dataset>)")
    parser.add_argument("--max-users", default=None)
    args, finetune_options = parser.parse_known_args()
    name = args.name or f"finetuned-{args.dataset}"

    with connect(args.db_url) as conn:
        catalog = load_catalog(conn, "default", with_embeddings=False)
        cutoff = splits.time_split(load_interactions(conn, "default", catalog)).cutoff
        registered = conn.execute("select lineage from pgrecs.embedding_models where name = %s", (name,)).fetchone()
    before = datetime.fromtimestamp(cutoff, tz=timezone.utc).isoformat()
    started = time.time()
    if registered is None:
        print(invoke(args.db_url, "models", "finetune", "--name", name, "--before", before, "--quiet",
                     *finetune_options), flush=True)
    print(invoke(args.db_url, "embed", "--model", name), flush=True)
    summary = RESULTS / f"finetune_confirm_{args.dataset}.json"
    evaluate = ["evaluate", "--protocol", "time-split", "--cutoff", before, "--strategies",
                f"semantic,semantic:{name}", "--dataset", args.dataset, "--out", f"/tmp/pgrecs_confirm_{args.dataset}",
                "--summary", str(summary)]
    if args.max_users:
        evaluate += ["--max-users", args.max_users]
    print(invoke(args.db_url, *evaluate), flush=True)
    with connect(args.db_url) as conn:
        lineage = conn.execute("select lineage from pgrecs.embedding_models where name = %s", (name,)).fetchone()[0]
    record = json.loads(summary.read_text())
    record.update({"test_cutoff": before, "model": name, "lineage": lineage, "machine": machine_info(),
                   "confirm_seconds": round(time.time() - started, 1)})
    summary.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
