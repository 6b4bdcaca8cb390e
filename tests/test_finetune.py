"""`pgrecs models finetune`: pairs mined in SQL (hand-computed oracle), hard negatives, a tiny
end-to-end fine-tune with its lineage, determinism and the weight mix, and one-line errors."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
from test_cli_errors import one_line_error

from pgrecs.embeddings import finetune

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"
BEFORE = datetime(2025, 1, 1, tzinfo=timezone.utc)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def purchase(user, item, at, session):
    return {"user_id": user, "item_id": item, "event_type": "purchase", "occurred_at": at, "session_id": session}


@pytest.fixture
def world(cli, tmp_path):
    """Five embeddable items, one inactive and one whose text is too poor to embed.

    u1: session s1 {A, B, F} at t0, session s5 {C} an hour later; u2: s2 {A, B}; u3: s3 {A, C, X};
    u4: s4 {D, E} after the cut-off."""
    items = [
        {"external_id": "A", "title": "Alpha ceramic mug"},
        {"external_id": "B", "title": "Bravo linen towel"},
        {"external_id": "C", "title": "Charlie wool scarf"},
        {"external_id": "D", "title": "Delta oak side table"},
        {"external_id": "E", "title": "Echo steel kettle"},
        {"external_id": "F", "title": "Foxtrot paper lantern", "active": False},
        {"external_id": "X", "title": "1234567 8901 23"},
    ]
    t0, t1, t2 = "2024-01-01T10:00:00+00:00", "2024-01-02T10:00:00+00:00", "2024-01-03T10:00:00+00:00"
    events = [
        purchase("u1", "A", t0, "s1"), purchase("u1", "B", t0, "s1"), purchase("u1", "F", t0, "s1"),
        purchase("u1", "C", "2024-01-01T11:00:00+00:00", "s5"),
        purchase("u2", "A", t1, "s2"), purchase("u2", "B", t1, "s2"),
        purchase("u3", "A", t2, "s3"), purchase("u3", "C", t2, "s3"), purchase("u3", "X", t2, "s3"),
        purchase("u4", "D", "2025-06-01T10:00:00+00:00", "s4"), purchase("u4", "E", "2025-06-01T10:00:00+00:00", "s4"),
    ]
    assert cli("load", "items", str(write_jsonl(tmp_path / "items.jsonl", items))).exit_code == 0
    assert cli("load", "events", str(write_jsonl(tmp_path / "events.jsonl", events))).exit_code == 0


def mined(conn, **kwargs) -> list[tuple]:
    """(sorted external id pair, source, strength, pair_rank) in the function's order."""
    rows = conn.execute(
        """
        select a.external_id, p.external_id, f.source, f.strength, f.pair_rank, f.anchor_text, f.positive_text,
               pgrecs.compose_item_text(a.title, a.description, a.brand, a.category_path, a.attributes)
        from pgrecs.finetune_pairs(before => %(before)s, sources => %(sources)s, per_item => %(per_item)s,
                                   max_pairs => %(max_pairs)s) as f
        join pgrecs.items a on a.item_id = f.anchor_item_id
        join pgrecs.items p on p.item_id = f.positive_item_id
        """, {"before": kwargs.get("before", BEFORE), "sources": kwargs.get("sources", list(finetune.SOURCES)),
              "per_item": kwargs.get("per_item", 5), "max_pairs": kwargs.get("max_pairs", 100)}).fetchall()
    for row in rows:
        assert row[5] == row[7]  # the anchor's text is the composed text `pgrecs embed` embeds
    return [("".join(sorted(r[0] + r[1])), r[2], round(r[3], 6), r[4]) for r in rows]


def test_pairs_per_source_match_hand_computed_scores(world, conn):
    # baskets (sessions): s1 {A, B}, s2 {A, B}, s3 {A, C}, s5 {C}; F is inactive, X not embeddable,
    # s4 after the cut-off. Baskets holding A 3, B 2, C 2. cosine x n / (n + 2):
    ab = 2 / math.sqrt(3 * 2) * 2 / 4
    ac = 1 / math.sqrt(3 * 2) * 1 / 3
    assert mined(conn, sources=["basket"]) == [("AB", "basket", round(ab, 6), 1), ("AC", "basket", round(ac, 6), 2)]
    # users: u1 {A, B, C}, u2 {A, B}, u3 {A, C}: A 3, B 2, C 2 users
    both = 2 / math.sqrt(3 * 2) * 2 / 4
    bc = 1 / math.sqrt(2 * 2) * 1 / 3
    assert mined(conn, sources=["coengagement"]) == [
        ("AB", "coengagement", round(both, 6), 1), ("AC", "coengagement", round(both, 6), 2),
        ("BC", "coengagement", round(bc, 6), 2)]
    # u1's tie group {A, B} at t0, then {C}: steps A->C and B->C weigh 1/2 each; 0.5 / (0.5 + 2)
    assert mined(conn, sources=["sequence"]) == [("AC", "sequence", 0.2, 1), ("BC", "sequence", 0.2, 2)]


def test_pairs_merge_sources_cap_per_item_and_respect_the_window(world, conn):
    ab = round(2 / math.sqrt(6) * 2 / 4, 6)
    # a pair counts once, for the source where it ranks best (ties: the order of `sources`)
    assert mined(conn) == [("AB", "basket", ab, 1), ("AC", "sequence", 0.2, 1), ("BC", "sequence", 0.2, 2)]
    assert mined(conn, per_item=1) == [("AB", "basket", ab, 1), ("AC", "sequence", 0.2, 1)]
    assert mined(conn, max_pairs=1) == [("AB", "basket", ab, 1)]
    # without a cut-off, u4's session {D, E} counts too (one basket each: 1 x 1 / 3)
    everything = mined(conn, before=None, sources=["basket"])
    assert ("DE", "basket", round(1 / 3, 6), 1) in everything
    assert all("F" not in p and "X" not in p for p, *_ in everything)


def test_hard_negatives_are_same_category_and_never_engaged_together(cli, conn, tmp_path, minilm):
    kitchen, garden = ["Kitchen"], ["Garden"]
    items = [
        {"external_id": "mug", "title": "Ceramic coffee mug", "category_path": kitchen},
        {"external_id": "mug-lid", "title": "Ceramic coffee mug with lid", "category_path": kitchen},
        {"external_id": "stoneware", "title": "Stoneware coffee mug", "category_path": kitchen},
        {"external_id": "cup", "title": "Porcelain tea cup and saucer", "category_path": kitchen},
        {"external_id": "kettle", "title": "Stainless steel tea kettle", "category_path": kitchen},
        {"external_id": "teapot", "title": "Glass teapot with infuser", "category_path": kitchen},
        {"external_id": "hose", "title": "Expandable garden hose", "category_path": garden},
        {"external_id": "spade", "title": "Garden spade with ash handle", "category_path": garden},
        {"external_id": "gloves", "title": "Leather gardening gloves", "category_path": garden},
    ]
    at = "2024-03-01T10:00:00+00:00"
    events = [purchase("u1", "mug", at, "s1"), purchase("u1", "mug-lid", at, "s1"),
              purchase("u2", "kettle", at, "s2"), purchase("u2", "teapot", at, "s2"),
              purchase("u3", "hose", at, "s3"), purchase("u3", "spade", at, "s3"),
              # engaged together with the mug, by someone else: never its negative
              purchase("u4", "mug", at, "s4"), purchase("u4", "stoneware", "2024-03-02T10:00:00+00:00", "s5")]
    cli("load", "items", str(write_jsonl(tmp_path / "items.jsonl", items)))
    cli("load", "events", str(write_jsonl(tmp_path / "events.jsonl", events)))
    recipe = replace(finetune.Recipe(), sources=("basket",), hard_negatives=True)
    pairs = finetune.mine_pairs(conn, None, recipe)
    assert len(pairs) == 3
    kept = finetune.add_hard_negatives(conn, minilm.model, pairs, None, recipe)
    assert kept == len(pairs.negatives) == len(pairs.negative_ids) == len(pairs) >= 1
    ids = dict(conn.execute("select item_id, external_id from pgrecs.items").fetchall())
    category = dict(conn.execute("select item_id, category_path[1] from pgrecs.items").fetchall())
    together = {frozenset(p) for p in [("mug", "mug-lid"), ("kettle", "teapot"), ("hose", "spade"), ("mug", "stoneware")]}
    for anchor, positive, negative in zip(pairs.anchor_ids, pairs.positive_ids, pairs.negative_ids):
        assert negative not in (anchor, positive)
        assert category[negative] == category[anchor]
        assert frozenset((ids[anchor], ids[negative])) not in together


def test_training_is_deterministic_for_a_seed_and_the_mix_interpolates(minilm):
    import torch

    texts = [f"{w} ceramic mug in {c}" for w in ("large", "small", "tall", "wide", "round") for c in
             ("red", "blue", "green", "white", "black", "grey", "pink", "teal", "gold", "navy")]
    pairs = finetune.Pairs(anchors=texts[:25], positives=texts[25:], sources=["basket"] * 25,
                           anchor_ids=list(range(25)), positive_ids=list(range(25, 50)))
    recipe = replace(finetune.Recipe(), max_seq_length=12, batch_size=8, learning_rate=1e-4)
    first = finetune.train(minilm.path, pairs, recipe, progress=False)
    second = finetune.train(minilm.path, pairs, recipe, progress=False)
    assert first.steps == second.steps == 4 and first.device == "cpu"
    state_a, state_b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    # embedding reads as many tokens as the base model, whatever training truncated to
    assert first.model.max_seq_length == minilm.max_tokens

    base = {k: v.clone() for k, v in minilm.model.state_dict().items()}
    key = "0.auto_model.encoder.layer.0.attention.self.query.weight"
    key = key if key in state_a else next(k for k in state_a if k.endswith("attention.self.query.weight"))
    assert not torch.equal(state_a[key], base[key])
    finetune.mix_weights(second.model, base, 0.5)
    halfway = second.model.state_dict()
    assert torch.allclose(halfway[key], (base[key] + state_a[key]) / 2, atol=1e-6)
    finetune.mix_weights(second.model, base, 0.0)
    assert all(torch.equal(v, base[k]) for k, v in second.model.state_dict().items())


@pytest.mark.slow
def test_tiny_finetune_end_to_end_records_lineage(cli, conn, db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("PGRECS_HOME", str(tmp_path / "home"))
    assert cli("load", "items", str(SAMPLE / "items.jsonl.gz"), "-q").exit_code == 0
    assert cli("load", "events", str(SAMPLE / "events.jsonl.gz"), "-q").exit_code == 0
    result = cli("models", "finetune", "--name", "shop-tuned", "--before", "2011-09-01", "--max-pairs", "200",
                 "--max-seq-length", "16", "--batch-size", "16", "--quiet")
    assert result.exit_code == 0, result.output
    assert "registered shop-tuned (candidate, from all-MiniLM-L6-v2): 200 pairs, 13 steps" in result.output

    base_id, = conn.execute("select model_id from pgrecs.embedding_models where is_default").fetchone()
    state, base_model_id, source, lineage, evaluation, is_default = conn.execute(
        "select state, base_model_id, source, lineage, evaluation, is_default from pgrecs.embedding_models "
        "where name = 'shop-tuned'").fetchone()
    assert (state, base_model_id, evaluation, is_default) == ("candidate", base_id, None, False)
    assert Path(source) == tmp_path / "home" / "models" / "shop-tuned"
    assert json.loads((Path(source) / "pgrecs_lineage.json").read_text()) == lineage
    window_events, = conn.execute(
        "select count(*) from pgrecs.events where occurred_at < '2011-09-01' and event_type = 'purchase'").fetchone()
    assert lineage["window"]["before"] == "2011-09-01T00:00:00+00:00"
    assert lineage["window"]["events"] == window_events
    assert lineage["window"]["last_event"] < "2011-09-01"
    assert lineage["pairs"]["total"] == sum(lineage["pairs"]["by_source"].values()) == 200
    assert set(lineage["pairs"]["by_source"]) <= set(finetune.SOURCES)
    hyper = lineage["hyperparameters"]
    assert (hyper["max_seq_length"], hyper["batch_size"], hyper["max_pairs"], hyper["seed"]) == (16, 16, 200, 0)
    assert hyper["loss"] == "MultipleNegativesRankingLoss" and hyper["batch_sampler"] == "no_duplicates"
    assert lineage["training"]["steps"] == 13 and lineage["training"]["seconds"] > 0
    assert lineage["training"]["device"] == "cpu"
    assert lineage["base_model"]["name"] == "all-MiniLM-L6-v2"
    from importlib.metadata import version

    assert lineage["libraries"]["sentence-transformers"] == version("sentence-transformers")

    listed = cli("models", "list").output
    assert any(line.split("\t")[0] == "  shop-tuned" and "candidate" in line for line in listed.splitlines())
    # the candidate embeds like any registered model
    from pgrecs.embeddings.models import get_encoder

    encoder = get_encoder(source)
    assert encoder.dimensions == 384 and encoder.max_tokens == 256
    # `pgrecs evaluate --strategies semantic:shop-tuned` serves the candidate inside its scratch database
    from pgrecs.evaluation import scratch

    assert scratch.use_semantic_model(db_url, "default", "shop-tuned") == 0
    assert conn.execute("select is_default, state from pgrecs.embedding_models where name = 'shop-tuned'").fetchone() == (
        True, "active")


def test_errors_are_one_line(world, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PGRECS_HOME", str(tmp_path / "home"))
    assert one_line_error(cli("models", "finetune", "--base", "nope", "--name", "x")) == (
        "error: unknown embedding model 'nope' (pgrecs models list shows the registered ones)")
    assert one_line_error(cli("models", "finetune", "--name", "x", "--before", "2020-01-01")) == (
        "error: no positive events before 2020-01-01: nothing to fine-tune on (load events or move --before)")
    assert one_line_error(cli("models", "finetune", "--name", "x")) == (
        "error: only 4 training pairs in the window (at least 100 needed): widen the window, add --sources "
        "or raise --per-item")
    assert "already registered" in one_line_error(cli("models", "finetune", "--name", "all-MiniLM-L6-v2"))
    assert "pair sources must be among" in one_line_error(cli("models", "finetune", "--name", "x", "--sources", "clicks"))
    assert not (tmp_path / "home" / "models").exists()
