"""docs/finetuning.md shows what benchmarks/results holds: its tables are generated, never copied."""

from benchmarks import doc_tables, finetune_report


def test_the_finetuning_page_matches_the_results():
    assert doc_tables.main(["--check"], finetune_report.DOC, finetune_report.SECTIONS,
                           "python -m benchmarks.finetune_report") == 0, "run `python -m benchmarks.finetune_report`"


def test_every_generated_block_is_in_the_page():
    text = finetune_report.DOC.read_text()
    for name in finetune_report.SECTIONS:
        assert f"<!-- generated: {name} -->" in text and f"<!-- end: {name} -->" in text


def _cmp(active, candidate, lo, hi, n=10):
    return {"active": active, "candidate": candidate, "difference": candidate - active, "ci95": [lo, hi],
            "ratio": round(candidate / active, 4) if active else None, "n": n}


def _gate_record(dataset="retail", chosen_on="retail", keeps=True):
    from pgrecs.embeddings import gate

    evaluation = {
        "protocol": {"users": 1425, "cold_start_users": 80, "search_queries": 120},
        "semantic": {"ndcg@10": _cmp(0.05, 0.056, 0.001, 0.01), "hit_rate@10": _cmp(0.2, 0.21, -0.01, 0.03)},
        "cold_start": {"hit_rate@10": _cmp(0.05, 0.04, -0.03, 0.01)},
        "hybrid": {"ndcg@10": _cmp(0.1, 0.1, 0.0, 0.0)},
        "search": {"hit_rate@10": _cmp(0.5, 0.52, -0.02, 0.06), "mrr@10": _cmp(0.3, 0.31, -0.01, 0.03)},
    }
    evaluation["gate"] = gate.verdict(evaluation)
    recipe = {"sources": ["basket"], "max_pairs": 2000, "per_item": 5, "epochs": 1, "max_seq_length": 128,
              "learning_rate": 1e-4, "batch_size": 32, "hard_negatives": False, "mix": 0.2, "seed": 0}
    return {"dataset": dataset, "test_cutoff": "2011-11-01T16:15:00+00:00", "recipe": recipe,
            "chosen_on_validation": {"dataset": chosen_on, "label": "retail-2k", "validation_cutoff": "2011-09-23T09:19:00",
                                     "recipe": recipe, "ndcg_ratio_vs_base": 1.08, "ndcg_ci_vs_base": [0.0014, 0.0065],
                                     "cold_hit_rate@10": 0.054, "base_cold_hit_rate@10": 0.054, "keeps_cold_start": keeps},
            "pairs": {"total": 2000, "by_source": {"basket": 2000}}, "training": {"seconds": 31.4, "device": "cpu"},
            "hybrid": {"weights": {"ease": 1.0, "cooccurrence": 0.1}}, "evaluation": evaluation}


def test_the_gate_table_shows_each_comparison_the_verdict_and_the_choice_of_recipe():
    table = finetune_report.gate_table({"magazine": _gate_record("magazine"), "retail": _gate_record(),
                                        "movielens": None})
    header, _, *rows = table.split("\n\nWhere")[0].splitlines()
    assert header == "| | magazine | retail | movielens |"
    by_label = {r.split(" | ")[0].lstrip("| "): r for r in rows}
    assert "0.0500 -> 0.0560 (x1.120)" in by_label["semantic NDCG@10, off-the-shelf -> fine-tuned"]
    assert "[+0.0010, +0.0100]" in by_label["95% CI of the NDCG@10 difference"]
    assert "0.050 -> 0.040" in by_label["cold-start HR@10"]
    assert by_label["gate"].endswith("not run |")  # movielens has no record
    assert "refused: cold-start HR@10 0.0400 is lower than 0.0500" in by_label["gate"]
    assert "ease 1, cooccurrence 0.1" in by_label["tuned hybrid's weights"]
    assert "on validation of retail, another dataset (never on magazine's test)" in table
    assert "- retail: chosen on validation of retail, run `retail-2k` at mix 0.2" in table


def test_a_recipe_that_lost_cold_start_on_validation_says_so():
    table = finetune_report.gate_table({"beauty": _gate_record("beauty", "beauty", keeps=False)})
    assert "no run kept cold-start HR@10 on validation" in table


def test_validation_chooses_the_best_ratio_that_keeps_cold_start():
    from benchmarks.finetune_recipes import chosen_recipe

    def run(label, mixes):
        return {"dataset": "retail", "label": label, "validation_cutoff": "2011-09-23", "recipe": {"mix": 1.0},
                "base": {"cold_hit_rate@10": 0.05},
                "mixes": {mix: {"ndcg_ratio_vs_base": ratio, "ndcg_ci_vs_base": [0, 0], "cold_hit_rate@10": cold}
                          for mix, (ratio, cold) in mixes.items()}}

    results = {"runs": [run("a", {"0.5": (1.2, 0.04), "0.25": (1.05, 0.05)}), run("b", {"0.2": (1.07, 0.06)})]}
    chosen = chosen_recipe(results, "retail")
    assert (chosen["label"], chosen["recipe"]["mix"], chosen["keeps_cold_start"]) == ("b", 0.2, True)
    only_worse = {"runs": [run("a", {"1.0": (0.9, 0.04), "0.5": (0.8, 0.03)})]}
    assert chosen_recipe(only_worse, "retail")["recipe"]["mix"] == 1.0
    assert chosen_recipe(only_worse, "retail")["keeps_cold_start"] is False
    assert chosen_recipe(results, "beauty") is None


def test_the_target_line_counts_only_datasets_that_meet_every_part():
    good = _gate_record()
    from pgrecs.embeddings import gate

    good["evaluation"]["cold_start"]["hit_rate@10"] = _cmp(0.05, 0.05, -0.01, 0.01)
    good["evaluation"]["gate"] = gate.verdict(good["evaluation"])
    met, missing = finetune_report.meets_target(good)
    assert met and missing == []
    met, missing = finetune_report.meets_target(_gate_record())
    assert not met and missing == ["cold-start HR@10 lower"]
    line = finetune_report.target_line({"retail": good, "beauty": _gate_record("beauty")})
    assert line.startswith("**Target**") and ": not met, on 1 of 3:" in line
    assert "retail met, gate passed" in line and "magazine not run" in line
    assert "beauty not met (cold-start HR@10 lower), gate refused" in line
