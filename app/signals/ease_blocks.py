"""EASE by blocks: the EASE model for catalogs too large for one dense inverse.

Column j of EASE's B (how much each other item predicts item j) is a ridge regression of item j
on every other item: by block inversion of P = G^-1,

    B[-j, j] = -P[-j, j] / P[j, j] = G[-j, -j]^-1 G[-j, j]      (G = X'X + alpha E E' + lambda I)

so it can be solved over fewer predictors. Here the items are partitioned (METIS, on the graph of
each item's largest Gram entries: co-occurrence counts plus alpha times the cosine of the text
side information) into blocks of about `block_size` items. Each block is solved with one dense
Cholesky solve over the block plus its halo: the `halo_size` items outside it most connected to
it. The block's items are the targets; block and halo are their predictors. Row i of B, item i's
neighbour list, gathers the weights of i over every block it predicts in (its own, and those
whose halo holds it). Where the catalog fits one block, or every halo holds all other items,
this is dense EASE exactly (ease.ease_weights).

Cost: one (block + halo)^2 system per block (a fraction of a second at 1,000 + 1,000), so time grows
linearly with the catalog and memory is bounded by the largest block, the item graph and the
neighbour lists (`estimate_bytes`), not by items^2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.linalg import blas, lapack

from pgrecs.signals import ties
from pgrecs.signals.ease import DEFAULT_LAMBDA, EaseNeighbors

DEFAULT_BLOCK_SIZE = 1000
DEFAULT_HALO_SIZE = 1000
# largest Gram entries kept per item for the partition graph and the halos
DEFAULT_GRAPH_NEIGHBORS = 20
# METIS may overfill a part by 3% (its default imbalance)
_IMBALANCE = 1.03


@dataclass(frozen=True)
class BlockParams:
    lam: float = DEFAULT_LAMBDA
    side_weight: float = 0.0
    block_size: int = DEFAULT_BLOCK_SIZE
    halo_size: int = DEFAULT_HALO_SIZE
    graph_neighbors: int = DEFAULT_GRAPH_NEIGHBORS
    top_n: int = 50
    seed: int = 0


def estimate_bytes(n_items: int, n_interactions: int, pair_work: int, side_dims: int,
                   params: BlockParams) -> int:
    """Peak memory of `fit` before anything is allocated: the interaction matrix (two layouts),
    the side information, the largest chunk of Gram rows (`pair_work`: the sum over users of
    their item count squared, capped by the chunk budget), the item graph and METIS' copy of it,
    one block's dense systems, and the running neighbour lists."""
    matrix = 2 * n_interactions * (4 + 4) + 2 * 8 * n_items
    side = n_items * side_dims * 4
    # per Gram entry of a chunk: the product (value, column), its row, the filtered copies, the sort key and order
    gram_chunk = min(pair_work, _CHUNK_PAIRS) * 48
    graph_edges = 2 * n_items * params.graph_neighbors
    graph = graph_edges * (4 + 4 + 8) * 3
    width = int(min(n_items, params.block_size * _IMBALANCE + params.halo_size))
    block = 4 * width * width * 4
    lists = n_items * params.top_n * (4 + 4) * 3
    return int(matrix + side + gram_chunk + graph + block + lists)


_CHUNK_PAIRS = 40_000_000  # Gram entries computed at once while finding each item's largest ones


def pair_work(x: sparse.csr_matrix) -> int:
    """The sum over users of their item count squared: the number of Gram terms."""
    counts = np.diff(x.indptr).astype(np.int64)
    return int((counts * counts).sum())


def item_graph(x: sparse.csr_matrix, k: int, side_edges: sparse.csr_matrix | None = None) -> sparse.csr_matrix:
    """Symmetric graph of each item's k largest off-diagonal Gram entries: co-occurrence counts
    X'X (computed in chunks of items, so memory stays bounded) plus `side_edges` (alpha times
    the cosine of the item pairs the text side information links)."""
    n = x.shape[1]
    xt = x.T.tocsr()
    xc = x.tocsc()
    per_item = np.asarray(xt @ np.diff(x.indptr).astype(np.float64)).ravel()  # Gram terms per item row
    rows, cols, vals = [], [], []
    start = 0
    while start < n:
        stop = start + max(1, int(np.searchsorted(np.cumsum(per_item[start:]), _CHUNK_PAIRS)))
        block = (xt[start:stop] @ xc).tocsr()
        if side_edges is not None:
            block = block + side_edges[start:stop]
        block = block.tocoo()
        r, c, v = block.row, block.col, block.data.astype(np.float32)
        keep = r + start != c
        # an entry below 2 (one shared user, no text link) cannot be among a row's k largest
        # once the row has k entries of 2 or more: most entries go before the sort
        strong = keep & (v >= 2)
        keep &= strong | (np.bincount(r[strong], minlength=stop - start) < k)[r]
        r, c, v = r[keep], c[keep], v[keep]
        # one integer sort key (row, then value descending)
        order = np.argsort(r.astype(np.int64) * 2**32 - np.rint(np.minimum(v, 4e6) * 1000).astype(np.int64),
                           kind="stable")
        r, c, v = r[order], c[order], v[order]
        position = np.arange(len(r)) - np.searchsorted(r, np.arange(stop - start))[r]
        top = position < k
        rows.append(r[top] + start)
        cols.append(c[top])
        vals.append(v[top])
        start = stop
    graph = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return graph.maximum(graph.T).tocsr()


def partition(graph: sparse.csr_matrix, n_parts: int, seed: int = 0) -> np.ndarray:
    """Item -> block, a balanced METIS k-way partition that cuts as little Gram weight as it can."""
    if n_parts <= 1:
        return np.zeros(graph.shape[0], dtype=np.int64)
    import pymetis

    idx = pymetis.zero_copy_dtype()
    weights = np.maximum(1, np.rint(10 * np.log1p(graph.data))).astype(idx)
    adjacency = pymetis.CSRAdjacency(adj_starts=graph.indptr.astype(idx), adjacent=graph.indices.astype(idx))
    _, parts = pymetis.part_graph(n_parts, adjacency=adjacency, eweights=weights, options=pymetis.Options(seed=seed))
    return np.asarray(parts, dtype=np.int64)


def fit(x: sparse.csr_matrix, item_ids: np.ndarray, params: BlockParams, tie_keys: np.ndarray,
        side: np.ndarray | None = None, side_edges: sparse.csr_matrix | None = None) -> EaseNeighbors:
    """EASE neighbour lists by blocks for a binary (users x items) matrix, equal weights ordered
    by `tie_keys` (aligned with item_ids); `side` (items x d,
    unit-norm rows, zero rows for items without one) adds side_weight * side side' to the Gram,
    `side_edges` its largest entries to the partition graph (the caller's semantic lists)."""
    x = sparse.csr_matrix(x, dtype=np.float32)
    n = x.shape[1]
    top_n = min(params.top_n, n - 1)
    if top_n <= 0:
        return _empty()
    use_side = side is not None and params.side_weight > 0
    n_parts = int(np.ceil(n / params.block_size))
    if n_parts > 1:
        graph = item_graph(x, params.graph_neighbors, side_edges if use_side else None)
        parts = partition(graph, n_parts, params.seed)
    else:
        graph, parts = None, np.zeros(n, dtype=np.int64)
    xc = x.tocsc()
    best_ids = np.full((n, top_n), -1, dtype=np.int32)
    best_scores = np.zeros((n, top_n), dtype=np.float32)
    members = np.argsort(parts, kind="stable")
    bounds = np.searchsorted(parts[members], np.arange(parts.max() + 2))
    for p in range(len(bounds) - 1):
        targets = members[bounds[p]:bounds[p + 1]]
        if len(targets) == 0:
            continue
        predictors = np.concatenate([_halo(graph, targets, params.halo_size), targets])
        weights = _solve_block(xc, predictors, len(targets), params.lam,
                               side[predictors] if use_side else None, params.side_weight)
        _merge_top(best_ids, best_scores, predictors, targets, weights, top_n, tie_keys)
    return _to_neighbors(best_ids, best_scores, item_ids, tie_keys)


def _halo(graph: sparse.csr_matrix | None, targets: np.ndarray, size: int) -> np.ndarray:
    """The `size` items outside `targets` with the largest summed graph weight to them (all of
    them when `size` can hold every other item, so that the block is solved exactly)."""
    if graph is None or size <= 0:
        return np.array([], dtype=np.int64)
    if size >= graph.shape[0] - len(targets):
        return np.setdiff1d(np.arange(graph.shape[0]), targets)
    strength = np.asarray(graph[targets].sum(axis=0)).ravel()
    strength[targets] = 0
    linked = np.flatnonzero(strength > 0)
    if len(linked) > size:
        linked = linked[np.argpartition(-strength[linked], size - 1)[:size]]
    return np.sort(linked)


def _solve_block(xc: sparse.csc_matrix, predictors: np.ndarray, n_targets: int, lam: float,
                 side: np.ndarray | None, side_weight: float) -> np.ndarray:
    """Columns of B for the last n_targets predictors, over all predictors (rows):
    -P[:, j] / P[j, j] with P = G^-1 over the predictors, diagonal zero. float32, as the dense
    model: G = L L' (Cholesky), then P[:, targets] = L'^-1 (L^-1 E) with E the targets' unit
    columns; L^-1 E is zero above the targets' rows, so the forward solve is the trailing block's."""
    cols = xc[:, predictors]
    gram = (cols.T @ cols).toarray().astype(np.float32)
    if side is not None:
        s = side.astype(np.float32)
        gram += np.float32(side_weight) * (s @ s.T)
    gram[np.diag_indices_from(gram)] += np.float32(lam)
    factor, info = lapack.spotrf(gram, lower=True, overwrite_a=True, clean=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"the Gram matrix of a block is not positive definite (LAPACK info {info})")
    n = len(predictors)
    start = n - n_targets
    y = np.zeros((n, n_targets), dtype=np.float32, order="F")
    y[start:] = blas.strsm(1.0, factor[start:, start:], np.eye(n_targets, dtype=np.float32, order="F"), lower=1)
    p = blas.strsm(1.0, factor, y, lower=1, trans_a=1, overwrite_b=1)
    diag = p[start + np.arange(n_targets), np.arange(n_targets)]
    weights = p / -diag
    weights[start + np.arange(n_targets), np.arange(n_targets)] = 0.0
    return weights


def _merge_top(best_ids: np.ndarray, best_scores: np.ndarray, predictors: np.ndarray, targets: np.ndarray,
               weights: np.ndarray, top_n: int, tie_keys: np.ndarray) -> None:
    """Fold one block's weights (predictors x targets) into every predictor's running top-N,
    equal weights cut by tie key."""
    k = min(top_n, len(targets))
    if k < len(targets):
        pick = ties.top_k(weights, tie_keys[targets][np.newaxis, :], k)
    else:
        pick = np.broadcast_to(np.arange(len(targets)), (len(predictors), len(targets)))
    ids = np.concatenate([best_ids[predictors], targets[pick].astype(np.int32)], axis=1)
    scores = np.concatenate([best_scores[predictors], np.take_along_axis(weights, pick, axis=1)], axis=1)
    keep = ties.top_k(scores, _slot_keys(ids, tie_keys), top_n)
    best_ids[predictors] = np.take_along_axis(ids, keep, axis=1)
    best_scores[predictors] = np.take_along_axis(scores, keep, axis=1)


def _slot_keys(ids: np.ndarray, tie_keys: np.ndarray) -> np.ndarray:
    """Tie keys of list slots; an empty slot (-1) gets the largest key."""
    return np.where(ids >= 0, tie_keys[np.maximum(ids, 0)], np.iinfo(np.int64).max)


def _to_neighbors(best_ids: np.ndarray, best_scores: np.ndarray, item_ids: np.ndarray,
                  tie_keys: np.ndarray) -> EaseNeighbors:
    """Positive entries of each row, ranked by score, then tie key (as ease.top_neighbors)."""
    n, k = best_ids.shape
    valid = (best_ids >= 0) & (best_scores > 0)
    neighbor = np.where(valid, item_ids[np.maximum(best_ids, 0)], np.iinfo(np.int64).max)
    order = np.lexsort((_slot_keys(np.where(valid, best_ids, -1), tie_keys),
                        np.where(valid, -best_scores, np.inf)), axis=1)
    valid = np.take_along_axis(valid, order, axis=1)
    neighbor = np.take_along_axis(neighbor, order, axis=1)
    scores = np.take_along_axis(best_scores, order, axis=1)
    anchors = np.broadcast_to(item_ids[:, np.newaxis], (n, k))
    ranks = np.broadcast_to(np.arange(1, k + 1), (n, k))
    return EaseNeighbors(anchors[valid].astype(np.int64), neighbor[valid].astype(np.int64),
                         scores[valid].astype(np.float32), ranks[valid].astype(np.int64))


def _empty() -> EaseNeighbors:
    empty = np.array([], dtype=np.int64)
    return EaseNeighbors(empty, empty, np.array([], dtype=np.float32), empty)
