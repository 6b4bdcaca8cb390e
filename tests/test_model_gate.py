"""The evaluation gate: `pgrecs models evaluate` against the active model (time split at the
training cut-off), the stored verdict `pgrecs models promote` obeys, --force recorded, the rules
and the paired bootstrap on hand-made numbers, and one-line refusals."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
from test_cli_errors import one_line_error
from test_model_cutover import ITEMS, model_row, shop  # noqa: F401 (fixture)

from pgrecs.embeddings import finetune, gate
from pgrecs.evaluation import metrics

BEFORE = datetime(2011, 9, 1, tzinfo=timezone.utc)


def train_on_shuffled_pairs(conn, home, name: str) -> None:
    """The tiny recipe on the shop's mined pairs with the positives shuffled: texts paired at random."""
    recipe = replace(finetune.Recipe(), max_pairs=200, max_seq_length=16, batch_size=16, learning_rate=5e-4, mix=1.0)
    pairs = finetune.mine_pairs(conn, BEFORE, recipe)
    random.Random(0).shuffle(pairs.positives)
    finetune.finetune(conn, None, name, BEFORE, recipe, home, show_bar=False, pairs=pairs)
    conn.commit()


def test_gate_refuses_a_model_trained_on_shuffled_pairs(shop, cli, conn, tmp_path):
    train_on_shuffled_pairs(conn, tmp_path / "home", "shuffled")
    assert one_line_error(cli("models", "evaluate", "shuffled")) == (
        f"error: model shuffled has {ITEMS} items to embed: run pgrecs embed first")
    assert cli("embed").exit_code == 0

    result = cli("models", "evaluate", "shuffled", "--json")
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    stored = model_row(conn, "shuffled")
    assert conn.execute("select evaluation from pgrecs.embedding_models where name = 'shuffled'").fetchone()[0] == evaluation
    assert evaluation["protocol"]["cutoff"] == BEFORE.isoformat()
    assert evaluation["protocol"]["users"] > 50 and evaluation["protocol"]["search_queries"] > 0
    semantic = evaluation["semantic"]["ndcg@10"]
    assert semantic["n"] == evaluation["protocol"]["users"]
    assert semantic["ci95"][0] <= semantic["difference"] <= semantic["ci95"][1]
    # texts paired at random teach nothing the base model did not know better
    assert evaluation["gate"]["passed"] is False
    assert semantic["ci95"][0] <= 0
    assert evaluation["gate"]["rules"][0] == {"rule": "semantic NDCG@10 improves beyond its 95% interval",
                                              "passed": False}

    # promote refuses with the gate's first failed rule
    assert one_line_error(cli("models", "promote", "shuffled")) == (
        f"error: model shuffled did not pass the evaluation gate: {evaluation['gate']['reason']} "
        "(promote --force to override)")
    assert model_row(conn, "shuffled")["state"] == "candidate"

    result = cli("models", "promote", "shuffled", "--force")
    assert result.exit_code == 0, result.output
    promotion = model_row(conn, "shuffled")["lineage"]["promotions"][-1]
    assert promotion["forced"] is True and promotion["gate"] == evaluation["gate"]
    assert stored["model_id"] == model_row(conn, "shuffled")["model_id"]


def test_gate_errors_are_one_line(shop, cli, conn):
    assert one_line_error(cli("models", "evaluate", "nope")) == (
        "error: unknown embedding model 'nope' (pgrecs models list shows the registered ones)")
    assert one_line_error(cli("models", "evaluate", "all-MiniLM-L6-v2")) == (
        "error: model all-MiniLM-L6-v2 is the active model: evaluate a candidate against it")
    result = cli("models", "finetune", "--name", "everything", "--max-pairs", "120", "--max-seq-length", "16",
                 "--batch-size", "16", "--quiet")
    assert result.exit_code == 0, result.output
    assert one_line_error(cli("models", "evaluate", "everything")) == (
        "error: model everything was trained on every event: the gate needs events it never saw; "
        "fine-tune with --before DATE")


def evaluation(semantic=(0.20, 0.24, 0.01, 0.07), cold=(0.10, 0.10), hybrid=(0.30, 0.31),
               search=(0.50, 0.50, -0.02, 0.02)) -> dict:
    def m(active, candidate, lo=0.0, hi=0.0, n=100):
        return {"active": active, "candidate": candidate, "ci95": [lo, hi], "n": n}

    return {"semantic": {"ndcg@10": m(*semantic)}, "cold_start": {"hit_rate@10": m(*cold)},
            "hybrid": {"ndcg@10": m(*hybrid)}, "search": {"hit_rate@10": m(*search)}}


def test_gate_rules():
    assert gate.verdict(evaluation())["passed"] is True
    # a gain whose interval reaches zero is noise
    refused = gate.verdict(evaluation(semantic=(0.20, 0.24, -0.001, 0.07)))
    assert refused["passed"] is False and refused["reason"].startswith("semantic NDCG@10 0.2400 vs 0.2000")
    assert gate.verdict(evaluation(cold=(0.10, 0.09)))["reason"] == "cold-start HR@10 0.0900 is lower than 0.1000"
    assert gate.verdict(evaluation(hybrid=(0.30, 0.2999)))["reason"] == "hybrid NDCG@10 0.2999 is lower than 0.3000"
    assert gate.verdict(evaluation(search=(0.5, 0.4, -0.15, -0.05)))["reason"].startswith("search HR@10 0.4000")
    assert [r["passed"] for r in gate.verdict(evaluation(cold=(0.1, 0.0), hybrid=(0.3, 0.2)))["rules"]] == [
        True, False, False, True]


def test_comparisons_use_the_evaluation_bootstrap():
    rng = np.random.default_rng(1)
    current = rng.random(400)
    candidate = current + 0.05 + rng.normal(0, 0.2, 400)
    compared = gate._compare(candidate.tolist(), current.tolist(), seed=3)
    reference = metrics.paired_bootstrap(candidate, current, n_boot=gate.BOOTSTRAP_SAMPLES, seed=3)
    assert compared["ci95"] == [round(reference["low"], 6), round(reference["high"], 6)]
    assert compared["difference"] == round(reference["diff"], 6) and compared["n"] == 400
    assert compared["ci95"][0] < compared["difference"] < compared["ci95"][1]
    assert compared["ratio"] == round(candidate.mean() / current.mean(), 4)
    # a slice nobody is in (no cold-start users, no held-out queries) compares as empty, not as an error
    assert gate._compare([], [], seed=0) == {"active": 0.0, "candidate": 0.0, "difference": 0.0,
                                             "ci95": [0.0, 0.0], "ratio": None, "n": 0}


def test_search_queries_are_cleaned_title_halves_of_held_out_items(sql):
    rows = [("q1", '<span class="title">Quilted lambskin shoulder bag</span>', "A soft bag"),
            ("q2", "Retinol night serum", "For the face"),
            ("q3", '<span class="a-size-medium a-color-secondary">', "Markup for a title"),
            ("q4", "Jumbo bag red retrospot", "Not held out")]
    ids = [sql.execute("insert into pgrecs.items (external_id, title, description) values (%s, %s, %s)"
                       " returning item_id", row).fetchone()[0] for row in rows]
    queries = dict(gate._search_queries(sql, "default", ids[:3], seed=0))
    # markup never becomes a query: a title of nothing but a tag has no words left
    assert queries == {"Quilted lambskin": {ids[0]}, "Retinol night": {ids[1]}}
