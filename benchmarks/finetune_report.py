"""The generated tables of docs/finetuning.md, from benchmarks/results: `python -m benchmarks.finetune_report`
rewrites every block between `<!-- generated: NAME -->` and `<!-- end: NAME -->`; `--check` exits 1
when the committed page differs from what the JSON gives (tests/test_finetune_report.py runs it)."""

from __future__ import annotations

import json
import sys

from benchmarks import cf_report, doc_tables
from benchmarks.finetune_recipes import markdown_table

RESULTS = cf_report.RESULTS
DOC = cf_report.ROOT / "docs" / "finetuning.md"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def speed_table() -> str:
    run = _load("finetune")
    if run is None:
        return recipe_speed_table()
    seconds, training = run["seconds"], run["training"]
    measured = f"{run['pairs']:,} pairs ({', '.join(f'{k} {v:,}' for k, v in sorted(run['pairs_by_source'].items()))})"
    lines = [
        "| quantity | value |",
        "| --- | --- |",
        f"| pairs measured | {measured} |",
        f"| device | {run['device']} ({training['torch_threads']} torch threads"
        f"{', ' + run['gpu']['device'] if run['gpu'].get('measured') else ''}) |",
        f"| GPU | {'measured: ' + run['gpu']['device'] if run['gpu'].get('measured') else 'not measured: ' + run['gpu']['note'] + ' (this project is lent none)'} |",
        f"| mining the pairs (SQL) | {seconds['mine']:,.1f} s |",
        f"| training | {seconds['train']:,.1f} s, {training['pairs_per_s']:.1f} pairs/s |",
        f"| end to end (mine, train, save, register) | {seconds['end_to_end']:,.1f} s |",
        f"| baseline: encoding the same pairs once with the base model | {run['baseline_encode_pairs_per_s']:.1f} pairs/s "
        f"(training runs at {run['ratio_train_vs_encode']:.2f}x that rate) |",
        f"| 10,000 pairs end to end{' (extrapolated)' if run.get('extrapolated') else ''} | {run['value']:,.0f} s "
        f"({run['value'] / 60:.1f} min; target <= 20 min: {'met' if run['met'] else 'not met'}) |",
        f"| 1-minute load average before / after | {run['load_average_1m'][0]} / {run['load_average_1m'][1]} "
        f"on {run['machine']['cpu_count']} cores |",
    ]
    return "\n".join(lines)


def recipe_speed_table() -> str:
    """Until the end-to-end benchmark has run: the training times the recipe runs recorded."""
    recipes = _load("finetune_recipes")
    lines = ["_The end-to-end benchmark has not run yet (`flock /tmp/pgrecs-heavy.lock python -m benchmarks.run "
             "finetune`). Training alone, as the recipe runs below recorded it (CPU, one epoch each); 10,000 pairs "
             "extrapolated at each run's rate:_", "",
             "| run | dataset | pairs | max sequence length | training s | pairs/s | 10,000 pairs (extrapolated) "
             "| 1-minute load average |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in (recipes or {}).get("runs", []):
        rate = run["pairs"] * run["recipe"]["epochs"] / run["training_seconds"]
        lines.append(f"| {run['label']} | {run['dataset']} | {run['pairs']:,} | {run['recipe']['max_seq_length']} | "
                     f"{run['training_seconds']:,.0f} | {rate:.1f} | {10_000 / rate / 60:.0f} min | "
                     f"{run.get('load_average_1m', '–')} |")
    return "\n".join(lines)


def recipes_table() -> str:
    recipes = _load("finetune_recipes")
    return markdown_table(recipes) if recipes else "_no recipe tried yet: `python -m benchmarks.finetune_recipes`_"


SECTIONS = {"finetune_speed": speed_table, "finetune_recipes": recipes_table}


def main(argv: list[str]) -> int:
    return doc_tables.main(argv, DOC, SECTIONS, "python -m benchmarks.finetune_report")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
