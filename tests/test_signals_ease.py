"""EASE against a direct numpy computation of Steck's closed form."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from app.signals.ease import ease_from_pairs, ease_weights, top_neighbors


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
