"""Co-occurrence neighbours as a sparse matrix product over the dbt basket table.

The same score as the dbt mart fct_item_cooccurrence (which stays the reference an analyst can
build with plain `dbt build`; tests/test_dbt_pipeline.py checks both agree):

    score(i, j) = dot(w_i, w_j) / (|w_i| |w_j|) * n_ij / (n_ij + cooc_shrinkage)

with w_i the item's weights over the baskets of recs_intermediate.int_basket_items_weighted and
n_ij the number of baskets holding both. `pgrecs refresh` computes it here because a sparse
X^T X over ~1M basket rows takes about a second, where the SQL self-join with a hash aggregate
over the ~7M basket pairs and a window sort took most of the refresh. Only the rows of the items
that recs_intermediate.int_items_cooccurrence_touched lists are computed (every item on a full
refresh): X[:, touched]^T X reads every basket, so a recomputed item's sums are complete.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from pgrecs.db import connect
from pgrecs.signals.ties import read_tie_keys


@dataclass
class Neighbors:
    item_ids: np.ndarray
    neighbor_ids: np.ndarray
    scores: np.ndarray
    supports: np.ndarray
    ranks: np.ndarray

    def __len__(self) -> int:
        return len(self.item_ids)


def _read_columns(conn, query: str, params: tuple, types: tuple[str, ...]) -> list[np.ndarray]:
    """A query's non-null bigint ('int8') / double ('float8') columns as numpy arrays, through
    COPY ... (format binary) decoded in place (a million rows in well under a second)."""
    from psycopg import sql

    chunks = []
    stmt = sql.SQL("copy ({}) to stdout (format binary)").format(sql.SQL(query))
    with conn.cursor().copy(stmt, params) as copy:
        for block in copy:
            chunks.append(bytes(block))
    data = b"".join(chunks)
    # header: 11-byte signature, int32 flags, int32 extension length (+ extension); trailer: int16 -1
    header = 19 + int.from_bytes(data[15:19], "big")
    fields = [("count", ">i2")]
    for i, kind in enumerate(types):
        fields += [(f"len{i}", ">i4"), (f"col{i}", {"int8": ">i8", "float8": ">f8"}[kind])]
    rows = np.frombuffer(data[header:len(data) - 2], dtype=np.dtype(fields))
    if len(rows) and (np.any(rows["count"] != len(types)) or any(np.any(rows[f"len{i}"] != 8) for i in range(len(types)))):
        raise ValueError("unexpected row layout in COPY binary output (null values?)")
    return [rows[f"col{i}"].astype(np.int64 if kind == "int8" else np.float64) for i, kind in enumerate(types)]


def neighbors_from_baskets(baskets: np.ndarray, items: np.ndarray, weights: np.ndarray, touched: np.ndarray | None,
                           top_n: int, shrinkage: float, tie_keys_of: Callable[[np.ndarray], np.ndarray]) -> Neighbors:
    """Top-N neighbours of the touched items (all items when touched is None); equal scores are
    ordered by the tie keys `tie_keys_of` gives for the sorted distinct item ids."""
    item_ids, col = np.unique(items, return_inverse=True)
    item_tie_keys = tie_keys_of(item_ids)
    _, row = np.unique(baskets, return_inverse=True)
    shape = (int(row.max()) + 1 if len(row) else 0, len(item_ids))
    x = sparse.csc_matrix((weights, (row, col)), shape=shape)
    b = sparse.csc_matrix((np.ones_like(weights), (row, col)), shape=shape)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
    if touched is None:
        anchors = np.arange(len(item_ids))
    else:
        anchors = np.flatnonzero(np.isin(item_ids, touched))
    x_anchors, b_anchors = (x, b) if touched is None else (x[:, anchors], b[:, anchors])
    # the two products side by side: scipy's sparse product releases the GIL
    with ThreadPoolExecutor(max_workers=2) as pool:
        dots_future = pool.submit(lambda: (x_anchors.T @ x).tocsr())
        supports = (b_anchors.T @ b).tocsr()
        dots = dots_future.result()
    # x and b share one sparsity structure, so the two products list their entries in one order
    if not (np.array_equal(dots.indptr, supports.indptr) and np.array_equal(dots.indices, supports.indices)):
        dots.sort_indices()
        supports.sort_indices()
    out_items, out_neighbors, out_scores, out_supports, out_ranks = [], [], [], [], []
    for r, anchor in enumerate(anchors):
        lo, hi = dots.indptr[r], dots.indptr[r + 1]
        cols = dots.indices[lo:hi]
        keep = cols != anchor
        cols = cols[keep]
        if len(cols) == 0:
            continue
        dot = dots.data[lo:hi][keep]
        support = supports.data[supports.indptr[r]:supports.indptr[r + 1]][keep]
        score = dot / (norms[anchor] * norms[cols]) * support / (support + shrinkage)
        neighbor_ids, neighbor_keys = item_ids[cols], item_tie_keys[cols]
        if len(cols) > top_n:
            # candidates: everything scoring at least the N-th best (ties kept for the tie-key order below)
            cut = np.partition(score, len(score) - top_n)[len(score) - top_n]
            sel = score >= cut
            score, neighbor_ids, neighbor_keys, support = score[sel], neighbor_ids[sel], neighbor_keys[sel], support[sel]
        order = np.lexsort((neighbor_keys, -score))[:top_n]
        m = len(order)
        out_items.append(np.full(m, item_ids[anchor], dtype=np.int64))
        out_neighbors.append(neighbor_ids[order])
        out_scores.append(score[order])
        out_supports.append(support[order].astype(np.int64))
        out_ranks.append(np.arange(1, m + 1, dtype=np.int64))
    if not out_items:
        empty = np.array([], dtype=np.int64)
        return Neighbors(empty, empty, np.array([], dtype=float), empty, empty)
    return Neighbors(np.concatenate(out_items), np.concatenate(out_neighbors), np.concatenate(out_scores),
                     np.concatenate(out_supports), np.concatenate(out_ranks))


def compute(url: str, top_n: int, shrinkage: float, touched_ready: Callable[[], None] | None = None) -> dict[str, Neighbors]:
    """Neighbours per tenant for the items listed in int_items_cooccurrence_touched.

    The baskets are read first; touched_ready, when given, is then called and must return once
    int_items_cooccurrence_touched is built (`pgrecs refresh` starts this as soon as dbt has built
    the baskets, so reading them overlaps the rest of the dbt build)."""
    out: dict[str, Neighbors] = {}
    touched_sql = "select distinct tenant_id from recs_intermediate.int_items_cooccurrence_touched"
    with connect(url) as conn:
        if touched_ready is None:  # built already: only the tenants with touched items
            tenants = sorted(r[0] for r in conn.execute(touched_sql).fetchall())
        else:
            tenants = [r[0] for r in conn.execute("select tenant_id from pgrecs.tenants order by 1").fetchall()]
        loaded = {}
        for tenant in tenants:
            loaded[tenant] = _read_columns(
                conn, "select basket_id, item_id, weight::float8 from recs_intermediate.int_basket_items_weighted"
                " where tenant_id = %s", (tenant,), ("int8", "int8", "float8"))
        conn.commit()  # the touched items are read in a new snapshot
        if touched_ready is not None:
            touched_ready()
        touched_tenants = {r[0] for r in conn.execute(touched_sql).fetchall()}
        for tenant in tenants:
            if tenant not in touched_tenants:
                continue
            (touched,) = _read_columns(
                conn, "select item_id from recs_intermediate.int_items_cooccurrence_touched where tenant_id = %s",
                (tenant,), ("int8",))
            baskets, items, weights = loaded.pop(tenant)
            out[tenant] = neighbors_from_baskets(baskets, items, weights, touched, top_n, shrinkage,
                                                 lambda ids: read_tie_keys(conn, ids))
    return out
