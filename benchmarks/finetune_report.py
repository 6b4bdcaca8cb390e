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


GATE_DATASETS = ("magazine", "beauty", "retail", "movielens")


def _ci(cmp: dict) -> str:
    lo, hi = cmp["ci95"]
    return f"[{lo:+.4f}, {hi:+.4f}]"


def _pair(cmp: dict, digits: int = 4) -> str:
    """Off-the-shelf -> fine-tuned, as the gate measured them on the same users or queries."""
    ratio = f" (x{cmp['ratio']:.3f})" if cmp.get("ratio") else ""
    return f"{cmp['active']:.{digits}f} -> {cmp['candidate']:.{digits}f}{ratio}"


def _weights(weights: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(weights.items(), key=lambda kv: (-kv[1], kv[0])))


def _recipe(r: dict) -> str:
    return (f"<= {r['max_pairs']:,} pairs, {r['per_item']} per item, lr {r['learning_rate']:g}, {r['epochs']} epoch(s), "
            f"length {r['max_seq_length']}, batch {r['batch_size']}, mix {r['mix']:g}"
            f"{', hard negatives' if r['hard_negatives'] else ''}")


def _choice(dataset: str, record: dict) -> str:
    """Which validation run chose the recipe of a gate run."""
    chosen = record.get("chosen_on_validation")
    if not chosen:
        return f"- {dataset}: recipe given as options ({' '.join(record.get('recipe_options') or []) or 'the defaults'})."
    lo, hi = chosen["ndcg_ci_vs_base"]
    cold, base_cold = chosen["cold_hit_rate@10"], chosen["base_cold_hit_rate@10"]
    where = (f"on validation of {dataset}" if chosen["dataset"] == dataset else
             f"on validation of {chosen['dataset']}, another dataset (never on {dataset}'s test)")
    rule = ("best NDCG@10 ratio among the runs and mixes that kept cold-start HR@10" if chosen["keeps_cold_start"] else
            "no run kept cold-start HR@10 on validation, so the best NDCG@10 ratio of all")
    cold_text = "–" if cold is None else f"{cold:.3f} vs {base_cold:.3f}"
    return (f"- {dataset}: chosen {where}, run `{chosen['label']}` at mix {chosen['recipe']['mix']:g} ({rule}): "
            f"validation NDCG@10 x{chosen['ndcg_ratio_vs_base']:.3f}, 95% CI of the difference [{lo:+.4f}, {hi:+.4f}], "
            f"cold-start HR@10 {cold_text}, validation cut-off {chosen['validation_cutoff'][:10]}.")


def gate_table(records: dict[str, dict | None]) -> str:
    """One column per dataset: the gate's comparison of the fine-tuned model with the off-the-shelf
    one on test (benchmarks/results/finetune_gate_<dataset>.json), then which validation run chose
    each recipe."""
    names = [d for d in records]
    done = {d: r for d, r in records.items() if r}
    if not done:
        return "_no recipe confirmed on test yet: `python -m benchmarks.finetune_confirm`_"

    def row(label: str, cell) -> str:
        cells = [cell(done[d]) if d in done else "not run" for d in names]
        return f"| {label} | " + " | ".join(cells) + " |"

    ev = lambda r: r["evaluation"]  # noqa: E731
    lines = [
        "| | " + " | ".join(names) + " |",
        "| --- |" + " --- |" * len(names),
        row("test cut-off; test users (with cold-start items)",
            lambda r: f"{r['test_cutoff'][:10]}; {ev(r)['protocol']['users']:,} ({ev(r)['protocol']['cold_start_users']:,})"),
        row("semantic NDCG@10, off-the-shelf -> fine-tuned", lambda r: _pair(ev(r)["semantic"]["ndcg@10"])),
        row("95% CI of the NDCG@10 difference", lambda r: _ci(ev(r)["semantic"]["ndcg@10"])),
        row("semantic HR@10", lambda r: _pair(ev(r)["semantic"]["hit_rate@10"], 3)),
        row("95% CI of the HR@10 difference", lambda r: _ci(ev(r)["semantic"]["hit_rate@10"])),
        row("cold-start HR@10", lambda r: _pair(ev(r)["cold_start"]["hit_rate@10"], 3)),
        row("tuned hybrid NDCG@10 with each model", lambda r: _pair(ev(r)["hybrid"]["ndcg@10"])),
        row("tuned hybrid's weights", lambda r: _weights(r["hybrid"]["weights"])),
        row("search HR@10 (held-out queries)",
            lambda r: f"{_pair(ev(r)['search']['hit_rate@10'], 3)} {_ci(ev(r)['search']['hit_rate@10'])}, "
                      f"{ev(r)['protocol']['search_queries']:,} queries"),
        row("search MRR@10", lambda r: _pair(ev(r)["search"]["mrr@10"], 3)),
        row("training pairs (by source)",
            lambda r: f"{r['pairs']['total']:,} ({', '.join(f'{k} {v:,}' for k, v in sorted(r['pairs']['by_source'].items()))})"),
        row("training s (device)", lambda r: f"{r['training']['seconds']:,.0f} ({r['training']['device']})"),
        row("recipe", lambda r: _recipe(r["recipe"])),
        row("gate", lambda r: "passed" if ev(r)["gate"]["passed"] else "refused: " + ev(r)["gate"]["reason"]),
    ]
    choices = [_choice(d, r) for d, r in done.items()]
    return ("\n".join(lines) + "\n\n" + target_line(done) + "\n\nWhere each recipe came from:\n\n"
            + "\n".join(choices))


TARGET_DATASETS, TARGET_RATIO, TARGET_COUNT = ("magazine", "beauty", "retail"), 1.10, 2


def meets_target(record: dict) -> tuple[bool, list[str]]:
    """The fine-tuning target on one dataset: semantic NDCG@10 at least +10% over the off-the-shelf
    model with the 95% interval of the difference above zero, cold-start HR@10 and the tuned hybrid's
    NDCG@10 not lower. Returns (met, the parts that are not)."""
    ev = record["evaluation"]
    semantic, cold, hybrid = ev["semantic"]["ndcg@10"], ev["cold_start"]["hit_rate@10"], ev["hybrid"]["ndcg@10"]
    missing = []
    if not (semantic["ratio"] or 0) >= TARGET_RATIO:
        missing.append(f"NDCG@10 x{semantic['ratio'] or 0:.3f} < x{TARGET_RATIO:.2f}")
    if not semantic["ci95"][0] > 0:
        missing.append("interval not above zero")
    if cold["n"] and cold["candidate"] < cold["active"]:
        missing.append("cold-start HR@10 lower")
    if hybrid["candidate"] < hybrid["active"]:
        missing.append("hybrid NDCG@10 lower")
    return not missing, missing


def target_line(done: dict[str, dict]) -> str:
    parts, met = [], 0
    for d in TARGET_DATASETS:
        if d not in done:
            parts.append(f"{d} not run")
            continue
        ok, missing = meets_target(done[d])
        met += ok
        verdict = "passed" if done[d]["evaluation"]["gate"]["passed"] else "refused"
        parts.append(f"{d} {'met' if ok else 'not met (' + ', '.join(missing) + ')'}, gate {verdict}")
    status = "met" if met >= TARGET_COUNT else "not met"
    return (f"**Target** (semantic NDCG@10 at least +{TARGET_RATIO - 1:.0%} over off-the-shelf with the interval above "
            f"zero, cold-start HR@10 and tuned hybrid not lower, on at least {TARGET_COUNT} of "
            f"{', '.join(TARGET_DATASETS)}): {status}, on {met} of {len(TARGET_DATASETS)}: " + "; ".join(parts) + ".")


def gate_section() -> str:
    return gate_table({d: _load(f"finetune_gate_{d}") for d in GATE_DATASETS})


SECTIONS = {"finetune_speed": speed_table, "finetune_recipes": recipes_table, "finetune_gate": gate_section}


def main(argv: list[str]) -> int:
    return doc_tables.main(argv, DOC, SECTIONS, "python -m benchmarks.finetune_report")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
