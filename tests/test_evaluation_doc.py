"""docs/evaluation.md is generated from the evaluation JSON: the committed page is what the committed
results give, and the page says "better" only where the bootstrap interval excludes zero."""

from __future__ import annotations

import json

from benchmarks import evaluation_doc


def test_committed_page_is_what_the_results_generate():
    assert evaluation_doc.DOC.read_text() == evaluation_doc.render(evaluation_doc.load()), \
        "docs/evaluation.md is stale: run python -m benchmarks.evaluation_doc"


def _run(dataset, protocol, ext_low, single_diff=0.01, tuned=0.2, external=0.15):
    ext = {"subject": "tuned", "reference": "baseline:ease", "metric": "ndcg@10", "a": tuned, "b": external,
           "diff": tuned - external, "low": ext_low, "high": ext_low + 0.08, "users": 500,
           "ratio": tuned / external, "ratio_low": 1.0, "ratio_high": 1.6}
    single = {"subject": "tuned", "reference": "sequence", "metric": "ndcg@10", "a": tuned, "b": tuned - single_diff,
              "diff": single_diff, "low": single_diff - 0.02, "high": single_diff + 0.02, "users": 500}
    return {
        "dataset": dataset, "protocol": protocol, "seconds": 10.0, "tuned": None,
        "params": {"seed": 0, "tune": False},
        "split": {"events": 1000, "train_events": 800, "test_users": 600, "evaluated_users": 500, "test_pairs": 700,
                  "repeat_pairs": 40, "repeat_users": 30, "repeat_only_users": 5, "catalog_items": 90},
        "comparisons": {"tuned vs best_external_baseline": ext, "tuned vs best_single_signal": single},
        "strategies": {"tuned": {"all": {"users": 500, "targets": 700, "ndcg@10": tuned, "hit_rate@10": 0.3},
                                 "repeat_items": {"users": 30, "targets": 40, "hit_rate@10": 0.0}},
                       "baseline:ease": {"all": {"users": 500, "targets": 700, "ndcg@10": external}}},
    }


def test_better_only_where_the_interval_excludes_zero(tmp_path):
    runs = {"a": _run("a", "time-split", ext_low=0.01), "b": _run("b", "time-split", ext_low=-0.01, tuned=0.16)}
    for name, run in runs.items():
        (tmp_path / f"evaluation_{name}_time_split.json").write_text(json.dumps(run))
    shuffled = _run("a", "time-split", ext_low=0.01)
    shuffled["strategies"]["tuned"]["all"]["ndcg@10"] = 0.21
    (tmp_path / "evaluation_a_time_split_shuffled.json").write_text(json.dumps(shuffled))
    (tmp_path / "evaluation_cf_a_time_split.json").write_text(json.dumps({"strategies": {}}))  # no comparisons: skipped
    loaded = evaluation_doc.load(tmp_path)
    assert set(loaded) == {("a", "time-split"), ("b", "time-split")}
    page = evaluation_doc.render(loaded)
    rows = {}
    for line in page.splitlines():  # the first row of each dataset: the headline table
        if line.startswith(("| a |", "| b |")):
            rows.setdefault(line.split(" | ")[0].lstrip("| "), line)
    assert "**better**" in rows["a"] and "1.33x" in rows["a"]
    assert "**better**" not in rows["b"] and "not distinguishable" in rows["b"]
    t = evaluation_doc.targets(loaded)
    assert t["datasets"]["a"]["ratio_met"] and t["datasets"]["a"]["interval_excludes_zero"]
    assert not t["datasets"]["b"]["ratio_met"] and not t["datasets"]["b"]["interval_excludes_zero"]  # 0.16 / 0.15
    assert t["intervals_excluding_zero"] == 1 and not t["intervals_met"]
    assert "target 1.10x **not met**: +0.005 NDCG@10 more would reach it" in page
    # the shuffled copy of a differs in one metric: the invariance table says so
    assert "| a | time-split | " in page and "| **no** | 0.0100 | tuned |" in page
    assert "| b | time-split | – | not run |" in page
    assert "40 repeat targets of 30 users (5 with repeats only, not test users)" in page
