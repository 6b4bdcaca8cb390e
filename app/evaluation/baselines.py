"""Strategies computed in Python on the training split: random, popularity, item-kNN (cosine),
EASE (Steck 2019, closed form) and implicit's ALS. They are the external yardsticks the SQL
strategies are compared with; all see exactly the same training events.

A strategy is any object with `name` and `recommend(users, k) -> {user code: item codes}`,
training items of each user excluded (full ranking over the candidate items: the catalogue, or the
items known at a time split's cut-off). Equal scores are ordered by the items' tie keys (a hash of
the external id), as in the serving SQL, never by item code or load order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from pgrecs.evaluation.data import Interactions


@dataclass
class TrainingData:
    matrix: sp.csr_matrix  # users x items, binary
    n_users: int
    n_items: int
    tie_rank: np.ndarray | None = None  # per item code: its place in tie-key order (Catalog.tie_order)
    allowed: np.ndarray | None = None   # bool per item code: the items a ranking may return

    @classmethod
    def from_interactions(cls, train: Interactions, n_users: int, n_items: int, tie_rank: np.ndarray | None = None,
                          allowed: np.ndarray | None = None) -> "TrainingData":
        m = sp.csr_matrix((np.ones(len(train), dtype=np.float32), (train.user, train.item)),
                          shape=(n_users, n_items))
        m.data[:] = 1.0  # duplicates summed above: binarise
        return cls(m, n_users, n_items, tie_rank, allowed)


def top_k_excluding(scores: np.ndarray, seen: sp.csr_matrix, k: int, tie_rank: np.ndarray | None = None,
                    allowed: np.ndarray | None = None) -> list[np.ndarray]:
    """Top-k columns per row with each row's seen items (and items not `allowed`) removed, in
    score order, equal scores by `tie_rank` (default: column order). Every item tied with the
    k-th score is considered, so which of them make the list depends on the tie ranks only."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    rows, cols = seen.nonzero()
    scores[rows, cols] = -np.inf
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    n = scores.shape[1]
    tie_rank = np.arange(n) if tie_rank is None else tie_rank
    k = min(k, n)
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1]
    out = []
    for row, bound in zip(scores, kth):
        cand = np.flatnonzero((row >= bound) & np.isfinite(row))
        out.append(cand[np.lexsort((tie_rank[cand], -row[cand]))[:k]])
    return out


class MatrixStrategy:
    """Scores = f(user rows); subclasses implement `scores(rows)`."""

    name = "matrix"
    batch = 1024

    def __init__(self, data: TrainingData) -> None:
        self.data = data

    def scores(self, users: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def recommend(self, users, k: int) -> dict[int, np.ndarray]:
        users = np.asarray(sorted(users), dtype=np.int64)
        out: dict[int, np.ndarray] = {}
        for start in range(0, len(users), self.batch):
            chunk = users[start:start + self.batch]
            seen = self.data.matrix[chunk]
            top = top_k_excluding(self.scores(chunk), seen, k, self.data.tie_rank, self.data.allowed)
            for u, row in zip(chunk.tolist(), top):
                out[u] = row
        return out


class RandomStrategy(MatrixStrategy):
    name = "random"

    def __init__(self, data: TrainingData, seed: int = 0) -> None:
        super().__init__(data)
        self.rng = np.random.default_rng(seed)

    def scores(self, users):
        return self.rng.random((len(users), self.data.n_items))


class PopularityStrategy(MatrixStrategy):
    name = "popularity"

    def __init__(self, data: TrainingData) -> None:
        super().__init__(data)
        self.pop = np.asarray(data.matrix.sum(axis=0)).ravel()

    def scores(self, users):
        return np.broadcast_to(self.pop, (len(users), self.data.n_items))


class ItemKNNStrategy(MatrixStrategy):
    """Item-based CF with cosine similarity over binary user vectors, top-`neighbors` kept per item."""

    name = "item_knn"

    def __init__(self, data: TrainingData, neighbors: int = 100) -> None:
        super().__init__(data)
        x = data.matrix.tocsc()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        norms[norms == 0] = 1.0
        xn = x @ sp.diags(1.0 / norms)
        sim = (xn.T @ xn).tocsr()
        sim.setdiag(0)
        sim.eliminate_zeros()
        self.sim = _keep_top_per_row(sim, neighbors)

    def scores(self, users):
        return (self.data.matrix[users] @ self.sim.T).toarray()


class EASEStrategy(MatrixStrategy):
    """EASE: B = I - P diag(1/diag(P)), P = (X'X + lambda I)^-1, diag(B) = 0. Items with no
    training interaction get zero columns (they cannot be scored by CF)."""

    name = "ease"

    def __init__(self, data: TrainingData, lam: float = 200.0) -> None:
        super().__init__(data)
        self.lam = lam
        self.name = f"ease(lambda={lam:g})"
        active = np.flatnonzero(np.asarray(data.matrix.sum(axis=0)).ravel() > 0)
        x = data.matrix[:, active]
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += lam
        p = np.linalg.inv(gram)
        b = p / (-np.diag(p))
        b[np.diag_indices_from(b)] = 0.0
        self.active = active
        self.b = b.astype(np.float32)

    def scores(self, users):
        out = np.zeros((len(users), self.data.n_items), dtype=np.float32)
        x = self.data.matrix[users][:, self.active]
        out[:, self.active] = (x @ self.b)
        # unseen-in-training items rank below every scored item
        mask = np.ones(self.data.n_items, dtype=bool)
        mask[self.active] = False
        out[:, mask] = -1e9
        return out


class ALSStrategy(MatrixStrategy):
    """implicit's AlternatingLeastSquares on BM25-weighted interactions."""

    name = "als"

    def __init__(self, data: TrainingData, factors: int = 64, iterations: int = 15,
                 regularization: float = 0.05, seed: int = 0) -> None:
        super().__init__(data)
        from implicit.als import AlternatingLeastSquares
        from implicit.nearest_neighbours import bm25_weight

        weighted = bm25_weight(data.matrix.astype(np.float32), K1=100, B=0.8).tocsr().astype(np.float32)
        self.model = AlternatingLeastSquares(factors=factors, iterations=iterations,
                                             regularization=regularization, random_state=seed)
        self.model.fit(weighted, show_progress=False)
        self.user_factors = np.asarray(self.model.user_factors)
        self.item_factors = np.asarray(self.model.item_factors)

    def scores(self, users):
        return self.user_factors[users] @ self.item_factors.T


def _keep_top_per_row(m: sp.csr_matrix, n: int) -> sp.csr_matrix:
    m = m.tocsr()
    rows, cols, vals = [], [], []
    for r in range(m.shape[0]):
        start, end = m.indptr[r], m.indptr[r + 1]
        if end == start:
            continue
        data = m.data[start:end]
        idx = m.indices[start:end]
        if len(data) > n:
            keep = np.argpartition(-data, n - 1)[:n]
            data, idx = data[keep], idx[keep]
        rows.append(np.full(len(data), r))
        cols.append(idx)
        vals.append(data)
    if not rows:
        return sp.csr_matrix(m.shape)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=m.shape)


def tune_ease(data: TrainingData, validation_test: dict[int, set[int]], lambdas=(50.0, 200.0, 800.0),
              k: int = 10) -> tuple[float, dict[float, float]]:
    """Best lambda by NDCG@k on a validation split (data = the validation-training matrix)."""
    from pgrecs.evaluation.metrics import ranking_metrics

    results = {}
    for lam in lambdas:
        recs = EASEStrategy(data, lam).recommend(validation_test.keys(), k)
        results[lam] = ranking_metrics(recs, validation_test, ks=(k,))[f"ndcg@{k}"]
    return max(results, key=results.get), results
