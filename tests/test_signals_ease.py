"""EASE against a direct numpy computation of Steck's closed form."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from pgrecs.signals import ease_blocks
from pgrecs.signals.cooccurrence import neighbors_from_baskets
from pgrecs.signals.ease import ease_from_pairs, ease_weights, top_neighbors
from pgrecs.signals.ties import order_keys


def IDS_AS_KEYS(ids):  # noqa: N802 - hand-made ids carry no load order
    return ids


def direct_ease(x: np.ndarray, lam: float) -> np.ndarray:
    g = x.T @ x + lam * np.eye(x.shape[1])
    p = np.linalg.inv(g)
    b = np.eye(x.shape[1]) - p / np.diag(p)  # Steck 2019, eq. 8
    np.fill_diagonal(b, 0.0)
    return b


def random_interactions(seed=0, users=60, items=25, density=0.15):
    rng = np.random.default_rng(seed)
    return (rng.random((users, items)) < density).astype(np.float64)


@pytest.mark.parametrize("lam", [0.5, 50.0, 300.0])
def test_weights_match_numpy(lam):
    x = random_interactions()
    b = ease_weights(sparse.csr_matrix(x), lam, dtype=np.float64)
    np.testing.assert_allclose(b, direct_ease(x, lam), rtol=1e-9, atol=1e-12)
    b32 = ease_weights(sparse.csr_matrix(x), lam)  # the float32 default
    np.testing.assert_allclose(b32, direct_ease(x, lam), rtol=1e-3, atol=1e-5)


def test_top_neighbors_are_the_largest_positive_entries_ranked():
    x = random_interactions(seed=3)
    b = direct_ease(x, 10.0)
    ids = np.arange(100, 100 + x.shape[1])
    nb = top_neighbors(b, ids, top_n=5, tie_keys=ids)
    for anchor in ids:
        mask = nb.item_ids == anchor
        row = b[anchor - 100]
        expected = [j for j in np.argsort(-row, kind="stable")[:5] if row[j] > 0]
        assert list(nb.neighbor_ids[mask] - 100) == expected
        assert list(nb.ranks[mask]) == list(range(1, len(expected) + 1))
        np.testing.assert_allclose(nb.scores[mask], row[expected], rtol=1e-6)
        assert anchor not in nb.neighbor_ids[mask]


def test_from_pairs_maps_ids_and_counts_repeats_once():
    users = np.array([1, 1, 2, 2, 2, 3, 3, 1])
    items = np.array([10, 20, 10, 20, 30, 20, 30, 10])  # (1, 10) twice: binary
    nb = ease_from_pairs(users, items, lam=1.0, top_n=2, tie_keys_of=IDS_AS_KEYS)
    x = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=float)
    b = direct_ease(x, 1.0)
    got = {(int(i), int(j)): float(s) for i, j, s in zip(nb.item_ids, nb.neighbor_ids, nb.scores)}
    ids = [10, 20, 30]
    expected = {(ids[i], ids[j]): b[i, j] for i in range(3) for j in range(3) if i != j and b[i, j] > 0}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5)


def unit_rows(rng, n, dim=8):
    e = rng.normal(size=(n, dim))
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.mark.parametrize("alpha", [0.0, 3.0])
def test_side_information_adds_the_embedding_gram(alpha):
    """G = X'X + alpha E E' + lambda I (Jeunen et al. 2020), computed directly."""
    x = random_interactions(seed=1)
    e = unit_rows(np.random.default_rng(1), x.shape[1])
    g = x.T @ x + alpha * e @ e.T + 20.0 * np.eye(x.shape[1])
    p = np.linalg.inv(g)
    expected = np.eye(x.shape[1]) - p / np.diag(p)
    np.fill_diagonal(expected, 0.0)
    b = ease_weights(sparse.csr_matrix(x), 20.0, e, alpha, dtype=np.float64)
    np.testing.assert_allclose(b, expected, rtol=1e-9, atol=1e-12)
    if alpha == 0:
        np.testing.assert_allclose(b, direct_ease(x, 20.0), rtol=1e-9, atol=1e-12)


def test_side_information_brings_in_an_item_without_interactions():
    """Item 40 has no interaction but reads like item 10: with side information it becomes a
    neighbour of 10 (and 10 of it); without, EASE cannot know it."""
    users = np.array([1, 1, 2, 2, 3, 3, 4])
    items = np.array([10, 20, 10, 20, 20, 30, 30])
    rng = np.random.default_rng(7)
    e = unit_rows(rng, 4, dim=16)
    e[3] = e[0]  # 40 described exactly like 10
    embedded = np.array([10, 20, 30, 40])
    plain = ease_from_pairs(users, items, lam=1.0, top_n=3, tie_keys_of=IDS_AS_KEYS)
    assert 40 not in plain.item_ids and 40 not in plain.neighbor_ids
    side = ease_from_pairs(users, items, lam=1.0, top_n=3, embedded_item_ids=embedded, embeddings=e * 5,
                           semantic_weight=10.0, tie_keys_of=IDS_AS_KEYS)  # unnormalised input is normalised
    pairs = set(zip(side.item_ids.tolist(), side.neighbor_ids.tolist()))
    assert (10, 40) in pairs and (40, 10) in pairs
    first_of_10 = side.neighbor_ids[(side.item_ids == 10) & (side.ranks == 1)]
    assert first_of_10.tolist() == [40]  # its twin outranks the item bought with it
    # weight 0: exactly plain EASE, embeddings or not
    zero = ease_from_pairs(users, items, lam=1.0, top_n=3, embedded_item_ids=embedded, embeddings=e,
                           semantic_weight=0.0, tie_keys_of=IDS_AS_KEYS)
    assert zero.item_ids.tolist() == plain.item_ids.tolist() and zero.neighbor_ids.tolist() == plain.neighbor_ids.tolist()


def test_order_keys_sort_by_score_then_tie_key():
    scores = np.array([0.5, 0.5, 0.7, -0.1, 0.5, 0.0], dtype=np.float32)
    keys = np.array([3, -(2**30), 9, 1, 2**30, -5], dtype=np.int64) << 33  # hashes differ in their upper bits
    got = np.argsort(-order_keys(scores, keys), kind="stable")
    expected = np.lexsort((keys, -scores))
    assert got.tolist() == expected.tolist()


def twin_world():
    """Items 1..4 interacted by exactly the same users (equal weights everywhere), item 0 with each
    of them: every list of 0 is a four-way tie decided by the tie keys, not by item ids."""
    users = np.repeat(np.arange(6), 5)
    items = np.tile(np.arange(5), 6) + 100
    tie = {i: k << 40 for i, k in {100: 50, 101: 40, 102: -7, 103: 30, 104: -9}.items()}  # 104, 102, 103, 101
    return users, items, tie


def test_dense_blocks_and_cooccurrence_cut_ties_by_tie_key():
    users, items, tie = twin_world()
    keys_of = lambda ids: np.array([tie[int(i)] for i in ids], dtype=np.int64)  # noqa: E731
    dense = ease_from_pairs(users, items, lam=1.0, top_n=2, tie_keys_of=keys_of)
    assert dense.neighbor_ids[dense.item_ids == 100].tolist() == [104, 102]
    # the block solver's float32 Cholesky leaves twins a rounding error apart, so its cut is
    # checked on exactly equal weights: one block folding targets 101..104 into item 100's list
    ids = np.arange(100, 105)
    best_ids, best_scores = np.full((5, 2), -1, dtype=np.int32), np.zeros((5, 2), dtype=np.float32)
    ease_blocks._merge_top(best_ids, best_scores, np.array([0]), np.arange(1, 5), np.full((1, 4), 0.25, np.float32),
                           2, keys_of(ids))
    blocks = ease_blocks._to_neighbors(best_ids, best_scores, ids, keys_of(ids))
    assert blocks.neighbor_ids[blocks.item_ids == 100].tolist() == [104, 102]
    cooc = neighbors_from_baskets(users, items, np.ones(len(users)), None, 2, 0.0, keys_of)
    assert cooc.neighbor_ids[cooc.item_ids == 100].tolist() == [104, 102]
