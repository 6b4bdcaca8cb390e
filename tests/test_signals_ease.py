"""EASE against a direct numpy computation of Steck's closed form."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from pgrecs.signals.ease import ease_from_pairs, ease_weights, top_neighbors


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
    nb = top_neighbors(b, ids, top_n=5)
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
    nb = ease_from_pairs(users, items, lam=1.0, top_n=2)
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
    plain = ease_from_pairs(users, items, lam=1.0, top_n=3)
    assert 40 not in plain.item_ids and 40 not in plain.neighbor_ids
    side = ease_from_pairs(users, items, lam=1.0, top_n=3, embedded_item_ids=embedded, embeddings=e * 5,
                           semantic_weight=10.0)  # unnormalised input is normalised
    pairs = set(zip(side.item_ids.tolist(), side.neighbor_ids.tolist()))
    assert (10, 40) in pairs and (40, 10) in pairs
    first_of_10 = side.neighbor_ids[(side.item_ids == 10) & (side.ranks == 1)]
    assert first_of_10.tolist() == [40]  # its twin outranks the item bought with it
    # weight 0: exactly plain EASE, embeddings or not
    zero = ease_from_pairs(users, items, lam=1.0, top_n=3, embedded_item_ids=embedded, embeddings=e,
                           semantic_weight=0.0)
    assert zero.item_ids.tolist() == plain.item_ids.tolist() and zero.neighbor_ids.tolist() == plain.neighbor_ids.tolist()
