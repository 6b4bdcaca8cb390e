"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders"): a learned item-item model in closed form.

    G = X^T X + lambda * I,  P = G^-1,  B_ij = -P_ij / P_jj,  B_ii = 0

X is the binary user x item interaction matrix. A user's score for item j is sum_i x_ui * B_ij, so
row i of B is item i's list of neighbours: the top-N positive B_ij are written to
pgrecs.item_neighbors with signal 'ease'. Dense inversion costs O(items^3) time and items^2 memory
(float32: 1.6 GB per matrix at 20,000 items, `dense_bytes`), hence the item limit above which
pgrecs.signals.ease_blocks solves the same regressions by blocks.

Side information (Jeunen, Van Balen & Goethals, "Closed-form models for collaborative filtering
with side-information", RecSys 2020): with the items' unit-norm text embeddings E as extra "users",
G = X^T X + alpha * E E^T + lambda * I. Items described alike then count as if co-consumed in
proportion to their cosine similarity, which matters for sparse catalogues (most users with one or
two items) and lets items without interactions, but with an embedding, into the model (cold start).
alpha = 0 is plain EASE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from pgrecs.signals import ties

DEFAULT_LAMBDA = 300.0
DEFAULT_MAX_ITEMS = 20_000
# alpha: 10 was the best of 0/1/3/10/30 on validation splits of magazine, beauty and MovieLens
# (../shared/data), and `pgrecs evaluate --tune` kept it on all four datasets
DEFAULT_SEMANTIC_WEIGHT = 10.0


def dense_bytes(n_items: int, n_interactions: int, side_dims: int) -> int:
    """Peak memory of `ease_from_pairs` before anything is allocated: nine float32 items x items
    matrices (the Gram matrix, its sparse product's dense copy, the side-information product,
    numpy's inverse with LAPACK's identity and working copies, B and its top-N pass: 13.5 GiB
    measured at 20,000 items by benchmarks/bench_cf_scale.py), the embeddings and the
    interaction matrix."""
    return int(9 * 4 * n_items * n_items + 4 * n_items * side_dims + 3 * 8 * n_interactions)


@dataclass
class EaseNeighbors:
    item_ids: np.ndarray  # anchor item id per row
    neighbor_ids: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray


def ease_weights(x: sparse.spmatrix, lam: float = DEFAULT_LAMBDA, side: np.ndarray | None = None,
                 side_weight: float = 0.0, dtype=np.float32) -> np.ndarray:
    """The EASE item-item matrix B for a (users x items) interaction matrix; `side` (items x d,
    unit-norm rows, zero rows for items without one) adds side_weight * side side^T to the Gram."""
    x = sparse.csr_matrix(x, dtype=dtype)
    gram = (x.T @ x).toarray()
    if side is not None and side_weight > 0:
        side = np.asarray(side, dtype=dtype)
        gram += dtype(side_weight) * (side @ side.T)
    gram[np.diag_indices_from(gram)] += lam
    p = np.linalg.inv(gram)
    b = p / (-np.diag(p))[np.newaxis, :]
    b[np.diag_indices_from(b)] = 0.0
    return b


def top_neighbors(b: np.ndarray, item_ids: np.ndarray, top_n: int, tie_keys: np.ndarray) -> EaseNeighbors:
    """Top-N positive entries of each row of B, ranked 1..N (ties by the items' tie keys, aligned
    with item_ids)."""
    n = b.shape[0]
    k = min(top_n, n - 1)
    anchors, neighbors, scores, ranks = [], [], [], []
    if k <= 0:
        empty = np.array([], dtype=np.int64)
        return EaseNeighbors(empty, empty, np.array([], dtype=np.float32), empty)
    block = 2048
    for start in range(0, n, block):
        rows = b[start:start + block]
        cand = ties.top_k(rows, tie_keys[np.newaxis, :], k)
        cand_scores = np.take_along_axis(rows, cand, axis=1)
        for r in range(len(rows)):
            keep = cand_scores[r] > 0
            m = int(keep.sum())
            if m == 0:
                continue
            anchors.append(np.full(m, item_ids[start + r], dtype=np.int64))
            neighbors.append(item_ids[cand[r][keep]])
            scores.append(cand_scores[r][keep].astype(np.float32))
            ranks.append(np.arange(1, m + 1, dtype=np.int64))
    if not anchors:
        empty = np.array([], dtype=np.int64)
        return EaseNeighbors(empty, empty, np.array([], dtype=np.float32), empty)
    return EaseNeighbors(np.concatenate(anchors), np.concatenate(neighbors), np.concatenate(scores), np.concatenate(ranks))


def ease_from_pairs(user_ids: np.ndarray, item_ids: np.ndarray, lam: float = DEFAULT_LAMBDA,
                    top_n: int = 50, embedded_item_ids: np.ndarray | None = None,
                    embeddings: np.ndarray | None = None, semantic_weight: float = 0.0, *,
                    tie_keys_of: Callable[[np.ndarray], np.ndarray]) -> EaseNeighbors:
    """EASE neighbours from (user, item) interaction pairs (duplicates count once); equal weights
    are ordered by `tie_keys_of(sorted distinct item ids)`. With
    `semantic_weight` > 0 and embeddings (rows aligned with `embedded_item_ids`), the embedded
    items join the model, interactions or not, and their similarity is side information."""
    use_side = embeddings is not None and len(embeddings) > 0 and semantic_weight > 0
    items = np.unique(np.concatenate([item_ids, embedded_item_ids]) if use_side else item_ids)
    users, user_index = np.unique(user_ids, return_inverse=True)
    item_index = np.searchsorted(items, item_ids)
    x = sparse.csr_matrix((np.ones(len(item_index), dtype=np.float32), (user_index, item_index)),
                          shape=(len(users), len(items)))
    x.sum_duplicates()
    x.data[:] = 1.0  # binary even where a pair repeats (csr sums duplicates)
    side = None
    if use_side:
        side = np.zeros((len(items), embeddings.shape[1]), dtype=np.float32)
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        side[np.searchsorted(items, embedded_item_ids)] = embeddings / np.where(norms > 0, norms, 1.0)
    return top_neighbors(ease_weights(x, lam, side, semantic_weight), items, top_n, tie_keys_of(items))
