"""Ranking and beyond-accuracy metrics on hand-computed examples, and against ranx."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pgrecs.evaluation import metrics


def test_hand_computed_single_user():
    # relevant {2, 7}; ranked 5, 2, 9, 7: hits at ranks 2 and 4
    m = metrics.user_ranking_metrics([5, 2, 9, 7], {2, 7}, k=4)
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(1.0)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    assert m["ndcg"] == pytest.approx(dcg / idcg)
    assert m["map"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert m["hit_rate"] == 1.0
    assert m["mrr"] == pytest.approx(0.5)
    # at k = 1 nothing is hit
    m1 = metrics.user_ranking_metrics([5, 2, 9, 7], {2, 7}, k=1)
    assert m1 == {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "map": 0.0, "hit_rate": 0.0, "mrr": 0.0}


def test_leave_one_out_ndcg_is_inverse_log_rank():
    m = metrics.user_ranking_metrics([4, 1, 3], {3}, k=10)
    assert m["ndcg"] == pytest.approx(1 / math.log2(4))
    assert m["precision"] == pytest.approx(1 / 10)  # precision divides by k, not by list length


def test_users_without_lists_count_as_zero():
    out = metrics.ranking_metrics({1: np.array([3])}, {1: {3}, 2: {4}}, ks=(5,))
    assert out["hit_rate@5"] == pytest.approx(0.5)


@pytest.mark.slow
def test_matches_ranx_on_random_runs():
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(3)
    test, recs, qrels, run = {}, {}, {}, {}
    for u in range(40):
        relevant = set(rng.choice(50, size=rng.integers(1, 4), replace=False).tolist())
        ranked = rng.permutation(50)[:25]
        test[u], recs[u] = relevant, ranked
        qrels[f"u{u}"] = {f"i{i}": 1 for i in relevant}
        run[f"u{u}"] = {f"i{i}": float(len(ranked) - r) for r, i in enumerate(ranked)}
    ours = metrics.ranking_metrics(recs, test, ks=(5, 10, 20))
    names = {"precision": "precision", "recall": "recall", "ndcg": "ndcg", "map": "map",
             "hit_rate": "hit_rate", "mrr": "mrr"}
    wanted = [f"{names[m]}@{k}" for m in names for k in (5, 10, 20)]
    theirs = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), wanted)
    for m in names:
        for k in (5, 10, 20):
            assert ours[f"{m}@{k}"] == pytest.approx(theirs[f"{names[m]}@{k}"], abs=1e-9), (m, k)


def test_gini():
    assert metrics.gini([5, 5, 5, 5]) == pytest.approx(0.0)
    assert metrics.gini([0, 0, 0, 10]) == pytest.approx(0.75)  # (n-1)/n for all-on-one
    assert metrics.gini([1, 2, 3]) == pytest.approx(2 / 9)


def test_beyond_accuracy_hand_computed():
    emb = np.array([[1, 0], [0, 1], [1, 0], [math.sqrt(0.5), math.sqrt(0.5)]], dtype=np.float32)
    pop = np.array([3.0, 1.0, 0.0, 0.0])  # training users per item, 3 training users
    brands = np.array(["a", "a", "b", None], dtype=object)
    recs = {0: np.array([0, 1]), 1: np.array([0, 2])}
    out = metrics.beyond_accuracy(recs, 2, 4, pop, 3, emb, brands, None)
    assert out["coverage@2"] == pytest.approx(3 / 4)
    # distances: list0 1 - 0 = 1; list1 1 - 1 = 0
    assert out["diversity@2"] == pytest.approx(0.5)
    p = (pop + 1) / 4
    assert out["novelty@2"] == pytest.approx(np.mean(-np.log2(p[[0, 1, 0, 2]])))
    # popularity percentiles (average ranks): item0 1.0, item1 2/3, item2 and 3 tie at 1/6
    assert out["popularity_bias@2"] == pytest.approx(np.mean([1.0, 2 / 3, 1.0, 1 / 6]))
    # exposure: brand a 3, brand b 1 -> gini of [1, 3] = 0.25
    assert out["gini_brand@2"] == pytest.approx(0.25)


def test_a_tuning_step_must_clearly_beat_the_current_configuration():
    from pgrecs.evaluation.runner import clearly_better

    rng = np.random.default_rng(0)
    current = (rng.random(300) < 0.15).astype(float)  # hit or miss per user, NDCG-like
    assert not clearly_better(current, current)
    # one more user hit out of 300: +2% on the mean, but one user is noise
    one_more = current.copy()
    one_more[np.flatnonzero(current == 0)[0]] = 1.0
    assert one_more.mean() > current.mean() * 1.01
    assert not clearly_better(one_more, current)
    # 20 more hits and none lost: clear
    many_more = current.copy()
    many_more[np.flatnonzero(current == 0)[:20]] = 1.0
    assert clearly_better(many_more, current)
    # as many hits gained as lost elsewhere: no gain
    swapped = many_more.copy()
    swapped[np.flatnonzero(current == 1)[:20]] = 0.0
    assert not clearly_better(swapped, current)


def test_set_valued_metrics_with_a_whole_tie_group_held_out():
    # relevant {3, 8, 9} (a basket); ranked 8, 1, 9: hits at ranks 1 and 3
    m = metrics.user_ranking_metrics([8, 1, 9], {3, 8, 9}, k=3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["hit_rate"] == 1.0  # any hit
    assert m["ndcg"] == pytest.approx((1 + 1 / 2) / (1 + 1 / math.log2(3) + 1 / 2))


def test_revenue_weighted_hits_hand_computed():
    prices = np.array([10.0, 2.0, np.nan, 5.0])
    recs = {0: np.array([1, 3]), 1: np.array([2, 0])}
    test = {0: {1, 0}, 1: {2}}
    # user 0 catches item 1 (2.0) of 12.0; user 1 catches item 2 of unknown price (0) of 0
    r = metrics.revenue_at_k(recs, test, prices, k=2)
    assert r["value"] == pytest.approx((2.0 + 0.0) / 2)
    assert r["share"] == pytest.approx(2.0 / 12.0)
    assert metrics.revenue_at_k(recs, test, prices, k=1, users={0})["value"] == pytest.approx(2.0)


def test_paired_bootstrap_on_a_constructed_case():
    # a beats b on a quarter of the users (by 1) and ties elsewhere: mean difference 0.25, ratio 2;
    # the interval must hold them and exclude zero
    a = np.array([1.0, 1.0, 0.0, 0.0] * 50)
    b = np.array([0.0, 1.0, 0.0, 0.0] * 50)
    r = metrics.paired_bootstrap(a, b, n_boot=2000, seed=0)
    assert r["diff"] == pytest.approx(0.25)
    assert 0 < r["low"] < 0.25 < r["high"] < 0.5 and r["better"] and not r["worse"]
    assert r["ratio"] == pytest.approx(2.0) and r["ratio_low"] < 2.0 < r["ratio_high"]
    # the same draws again with the seed; identical samples give a zero-width interval at zero
    assert metrics.paired_bootstrap(a, b, n_boot=2000, seed=0) == r
    same = metrics.paired_bootstrap(a, a, n_boot=500, seed=3)
    assert same["low"] == same["high"] == 0.0 and not same["better"] and not same["worse"]
    # a difference that is noise: one user of 200 -> the interval straddles zero
    c = b.copy()
    c[2] = 1.0
    noisy = metrics.paired_bootstrap(c, b, n_boot=2000, seed=0)
    assert noisy["low"] <= 0 < noisy["high"] and not noisy["better"]
    # the percentile interval agrees with the normal approximation here (sd of the mean diff)
    sd = np.std(a - b, ddof=0) / np.sqrt(len(a))
    assert r["high"] - r["low"] == pytest.approx(2 * 1.96 * sd, rel=0.15)


def test_paired_bootstrap_matches_normal_theory_and_needs_the_pairs():
    # a constant paired difference has a zero-width interval at that difference
    constant = metrics.paired_bootstrap([0.5] * 20, [0.25] * 20)
    assert constant["low"] == constant["high"] == pytest.approx(0.25)
    rng = np.random.default_rng(1)
    current = rng.random(400)
    candidate = current + 0.05 + rng.normal(0, 0.2, 400)
    r = metrics.paired_bootstrap(candidate, current, seed=3)
    diff = candidate - current
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    # close to the normal-theory interval of the mean difference
    assert abs(r["low"] - (diff.mean() - 1.96 * se)) < 0.01 and abs(r["high"] - (diff.mean() + 1.96 * se)) < 0.01
    # pairing matters: the same values with the pairs broken give a much wider interval
    wide = metrics.paired_bootstrap(candidate, rng.permutation(current), seed=3)
    assert wide["high"] - wide["low"] > 1.3 * (r["high"] - r["low"])
