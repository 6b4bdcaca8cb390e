"""The learned collaborative signal at catalog scale: EASE by blocks against its candidates.

Cost: fit time and peak memory (the resident memory high-water mark of a child process that loads
the interaction matrix and fits, nothing else: VmHWM, reset before the fit, so the loaded matrix
counts and the parent's memory does not) at 20,000, 100,000
and 1,000,000 items, with the baseline dense EASE at 20,000 items in the same command, and the
other candidate, implicit's ALS factors searched with an hnswlib index, at 20,000 and 100,000.

Data (`synthetic_interactions`): the shapes are resampled from the four real datasets in
../shared/data: each item's popularity is drawn from the pooled per-item event counts, each
user's number of distinct items from the pooled per-user counts, until there are
`CF_SCALE_EVENTS_PER_ITEM` (default 10) distinct (user, item) pairs per item on average. Which
items a user picks is synthetic: items belong to topics of about 500, and each user draws 70% of
their items from a primary topic, 10% from a second and 20% from the whole catalog, each by
popularity, so the co-consumption graph has the local structure real catalogs have (categories)
and the long tails of the real data.

On the synthetic catalogs up to 100,000 items every fit is also scored on 3,000 held-out pairs
(one random item of 3,000 random users, taken out before fitting; `holdout_ndcg@10`), with the
co-occurrence signal beside the candidates: a synthetic stand-in, flagged as such, for a real
catalog above the dense limit, since none of the shared datasets has more than 20,000 items.

Quality of the candidates (`quality`): leave-last-out on each real dataset (the last event of
each user held out; 3,000 users sampled with seed 0 where there are more), every model's
top-50 neighbour lists scored as pgrecs scores a single signal (the sum of a user's items'
lists), NDCG@10 and HR@10. This is the fast harness that picked the method; the figures of
record for the chosen model come from `pgrecs evaluate` (strategy `ease:blocks`).

Environment: CF_SCALE_SIZES (default 20000,100000,1000000), CF_SCALE_RUNS (default 1; fits
repeated and the median reported), CF_SCALE_EVENTS_PER_ITEM (default 10), CF_SCALE_QUALITY
(default 1: run the quality section).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import sparse

from benchmarks.run import WORK, median

SIZES = tuple(int(s) for s in os.environ.get("CF_SCALE_SIZES", "20000,100000,1000000").split(","))
RUNS = int(os.environ.get("CF_SCALE_RUNS", "1"))
EVENTS_PER_ITEM = float(os.environ.get("CF_SCALE_EVENTS_PER_ITEM", "10"))
QUALITY = os.environ.get("CF_SCALE_QUALITY", "1") != "0"
DENSE_MAX = 20_000
ALS_MAX = 100_000
SEED = 20261202
TOPIC_SIZE = 500
TOPIC_SHARES = (0.7, 0.1, 0.2)  # primary topic, second topic, whole catalog
LAMBDA = 300.0


def real_shapes() -> tuple[np.ndarray, np.ndarray]:
    """(events per item, distinct items per user), pooled over the four shared datasets."""
    from pgrecs import datasets

    item_counts, user_counts = [], []
    for name in datasets.DATASETS:
        users, items = {}, {}
        pairs = set()
        for e in datasets.iter_events(name):
            items[e["item_id"]] = items.get(e["item_id"], 0) + 1
            if (e["user_id"], e["item_id"]) not in pairs:
                pairs.add((e["user_id"], e["item_id"]))
                users[e["user_id"]] = users.get(e["user_id"], 0) + 1
        item_counts.append(np.fromiter(items.values(), dtype=np.int64))
        user_counts.append(np.fromiter(users.values(), dtype=np.int64))
    return np.concatenate(item_counts), np.concatenate(user_counts)


def synthetic_interactions(n_items: int, events_per_item: float = EVENTS_PER_ITEM, seed: int = SEED,
                           shapes: tuple[np.ndarray, np.ndarray] | None = None, extra: int = 0) -> sparse.csr_matrix:
    """A binary users x items matrix with the real data's popularity and activity shapes (see the
    module docstring): events_per_item x n_items pairs, plus `extra` (the held-out ones)."""
    item_counts, user_counts = shapes or real_shapes()
    rng = np.random.default_rng(seed)
    weight = rng.choice(item_counts, size=n_items).astype(np.float64)
    n_topics = max(1, n_items // TOPIC_SIZE)
    topic = rng.integers(n_topics, size=n_items)
    by_topic = np.argsort(topic, kind="stable")
    cum = np.cumsum(weight[by_topic])
    edges = np.searchsorted(topic[by_topic], np.arange(n_topics + 1))
    low = np.concatenate([[0.0], cum])[edges[:-1]]
    mass = np.concatenate([[0.0], cum])[edges[1:]] - low
    target = int(events_per_item * n_items) + extra
    rows, cols, users, pairs = [], [], 0, 0
    while pairs < target:
        batch = max(1000, int((target - pairs) / user_counts.mean() * 1.1))
        lengths = np.minimum(rng.choice(user_counts, size=batch), n_items // 2)
        first, second = rng.choice(n_topics, size=(2, batch), p=mass / mass.sum())
        user = np.repeat(np.arange(users, users + batch), lengths)
        kind = rng.choice(3, size=len(user), p=TOPIC_SHARES)
        chosen = np.where(kind == 0, np.repeat(first, lengths), np.repeat(second, lengths))
        point = np.where(kind == 2, rng.random(len(user)) * cum[-1],
                         low[chosen] + rng.random(len(user)) * mass[chosen])
        item = by_topic[np.minimum(np.searchsorted(cum, point), n_items - 1)]
        key = np.unique(user.astype(np.int64) * n_items + item)
        rows.append(key // n_items)
        cols.append(key % n_items)
        users += batch
        pairs += len(key)
    row, col = np.concatenate(rows), np.concatenate(cols)
    keep = slice(0, target)  # whole users first: the pairs are sorted by user
    x = sparse.csr_matrix((np.ones(target, dtype=np.float32), (row[keep], col[keep])), shape=(users, n_items))
    return x[np.diff(x.indptr) > 0]


# --- the candidates -----------------------------------------------------------------------------

def fit_blocks(x: sparse.csr_matrix, **overrides):
    from pgrecs.signals import ease_blocks

    params = ease_blocks.BlockParams(lam=LAMBDA, **overrides)
    ids = np.arange(x.shape[1], dtype=np.int64)
    return ease_blocks.fit(x, ids, params, tie_keys=ids)  # synthetic ids carry no load order


def fit_dense(x: sparse.csr_matrix):
    from pgrecs.signals import ease

    ids = np.arange(x.shape[1], dtype=np.int64)
    return ease.top_neighbors(ease.ease_weights(x, LAMBDA), ids, 50, tie_keys=ids)


def fit_als_hnsw(x: sparse.csr_matrix, factors: int = 64, top_n: int = 50):
    """implicit's ALS (bm25-weighted, as the evaluation's ALS baseline), each item's nearest
    items by cosine of the item factors from an hnswlib index."""
    import hnswlib
    from implicit.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import bm25_weight
    from threadpoolctl import threadpool_limits

    from pgrecs.signals.ease import EaseNeighbors

    weighted = bm25_weight(x.astype(np.float32), K1=100, B=0.8).tocsr().astype(np.float32)
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=factors, iterations=15, regularization=0.05, random_state=0)
        model.fit(weighted, show_progress=False)
    vectors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    active = np.flatnonzero(np.diff(x.tocsc().indptr) > 0)
    index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
    index.init_index(max_elements=len(active), ef_construction=100, M=16, random_seed=0)
    index.add_items(vectors[active], active)
    index.set_ef(max(100, top_n + 1))
    labels, distances = index.knn_query(vectors[active], k=min(top_n + 1, len(active)))
    anchors = np.repeat(active, labels.shape[1]).reshape(labels.shape)
    keep = labels != anchors
    scores = (1.0 - distances)
    ranks = np.cumsum(keep, axis=1)
    keep &= (ranks <= top_n) & (scores > 0)
    return EaseNeighbors(anchors[keep].astype(np.int64), labels[keep].astype(np.int64),
                         scores[keep].astype(np.float32), ranks[keep].astype(np.int64))


def fit_head(x: sparse.csr_matrix, share: float = 0.2):
    """Dense EASE on the most interacted `share` of the items; the others get no list."""
    from pgrecs.signals import ease

    counts = np.diff(x.tocsc().indptr)
    head = np.sort(np.argsort(-counts, kind="stable")[:max(2, int(share * x.shape[1]))])
    ids = head.astype(np.int64)
    return ease.top_neighbors(ease.ease_weights(x[:, head], LAMBDA), ids, 50, tie_keys=ids)


def fit_cooccurrence(x: sparse.csr_matrix, top_n: int = 50):
    """The co-occurrence signal's score on binary baskets: cosine x n / (n + 10)."""
    from pgrecs.signals.cooccurrence import neighbors_from_baskets

    coo = x.tocoo()
    return neighbors_from_baskets(coo.row.astype(np.int64), coo.col.astype(np.int64),
                                  np.ones(coo.nnz), None, top_n, 10.0, lambda ids: ids)


CANDIDATES = {
    "dense": fit_dense,
    "blocks": fit_blocks,
    "blocks_500": lambda x: fit_blocks(x, block_size=500, halo_size=500),
    "als_hnsw": fit_als_hnsw,
    "head_20pct": fit_head,
    "cooccurrence": fit_cooccurrence,
}


# --- cost: one fit in a child process -----------------------------------------------------------

HOLDOUT_USERS = 3000


def _matrix_path(n_items: int) -> Path:
    return WORK / "cf_scale" / f"x_{n_items}_{EVENTS_PER_ITEM:g}_{SEED}.npz"


def _holdout(x: sparse.csr_matrix, seed: int = SEED) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
    """One random item of each of HOLDOUT_USERS users with at least two items, taken out: (the
    training matrix, those users, their held-out items)."""
    rng = np.random.default_rng(seed)
    counts = np.diff(x.indptr)
    eligible = np.flatnonzero(counts >= 2)
    users = np.sort(rng.choice(eligible, size=min(HOLDOUT_USERS, len(eligible)), replace=False))
    picks = x.indptr[users] + rng.integers(counts[users])
    items = x.indices[picks]
    keep = np.ones(x.nnz, dtype=bool)
    keep[picks] = False
    coo = x.tocoo()
    train = sparse.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=x.shape)
    return train, users, items


def _child(method: str, path: str) -> None:
    from pgrecs.signals.ease_fit import PeakMemory

    stored = np.load(path)
    x = sparse.csr_matrix((stored["data"], stored["indices"], stored["indptr"]), shape=tuple(stored["shape"]))
    # the high-water mark of this process image (VmHWM): ru_maxrss would also hold the parent's
    # resident size at the fork, which Linux carries across exec
    with PeakMemory() as peak:
        started = time.perf_counter()
        nb = CANDIDATES[method](x)
        seconds = time.perf_counter() - started
    out = {"fit_s": round(seconds, 2), "peak_rss_bytes": int(peak.bytes), "neighbor_rows": int(len(nb.item_ids)),
           "items_with_lists": int(len(np.unique(nb.item_ids)))}
    if "test_users" in stored and x.shape[1] <= ALS_MAX:
        users, items = stored["test_users"], stored["test_items"]
        ndcg, hr = _ndcg_hr(x, dict(zip(users.tolist(), items.tolist())), users, nb)
        out |= {"holdout_ndcg@10": round(ndcg, 4), "holdout_hr@10": round(hr, 4)}
    print(json.dumps(out))


def _fit_in_child(method: str, path: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_cf_scale", "fit", method, str(path)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["exit " + str(done.returncode)])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cost(shapes) -> list[dict]:
    from pgrecs.signals import ease_blocks

    rows = []
    for n_items in SIZES:
        path = _matrix_path(n_items)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            train, users, items = _holdout(synthetic_interactions(n_items, shapes=shapes, extra=HOLDOUT_USERS))
            np.savez(path, data=train.data, indices=train.indices, indptr=train.indptr, shape=np.array(train.shape),
                     test_users=users, test_items=items)
        stored = np.load(path)
        x = sparse.csr_matrix((stored["data"], stored["indices"], stored["indptr"]), shape=tuple(stored["shape"]))
        users_per_item = np.diff(x.tocsc().indptr)
        info = {"items": n_items, "users": x.shape[0], "interactions": int(x.nnz),
                "interactions_per_item": round(x.nnz / n_items, 2),
                "items_without_interactions": int((users_per_item == 0).sum()),
                "max_users_per_item": int(users_per_item.max()),
                "max_items_per_user": int(np.diff(x.indptr).max()),
                "gram_terms": ease_blocks.pair_work(x)}
        info["blocks_estimate_bytes"] = ease_blocks.estimate_bytes(
            n_items, x.nnz, info["gram_terms"], 0, ease_blocks.BlockParams())
        del x
        methods = (["blocks"] + (["dense"] if n_items <= DENSE_MAX else [])
                   + (["als_hnsw", "cooccurrence"] if n_items <= ALS_MAX else []))
        for method in methods:
            fits = [_fit_in_child(method, path) for _ in range(RUNS)]
            ok = [f for f in fits if "error" not in f]
            row = dict(info, method=method, runs=len(fits))
            if ok:
                row |= {"fit_s": median([f["fit_s"] for f in ok]), "fit_s_runs": [f["fit_s"] for f in ok],
                        "peak_rss_bytes": int(max(f["peak_rss_bytes"] for f in ok)),
                        "peak_rss_gib": round(max(f["peak_rss_bytes"] for f in ok) / 2**30, 2),
                        "neighbor_rows": ok[0]["neighbor_rows"], "items_with_lists": ok[0]["items_with_lists"]}
                row |= {k: v for k, v in ok[0].items() if k.startswith("holdout_")}
            else:
                row["error"] = fits[0]["error"]
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    return rows


# --- quality on the real datasets ----------------------------------------------------------------

def _leave_last_out(name: str):
    from pgrecs import datasets

    users, items, times = [], [], []
    for e in datasets.iter_events(name):
        users.append(e["user_id"])
        items.append(e["item_id"])
        times.append(e["occurred_at"])
    _, u = np.unique(np.array(users), return_inverse=True)
    _, i = np.unique(np.array(items), return_inverse=True)
    order = np.argsort(np.array(times), kind="stable")
    u, i = u[order], i[order]
    last = np.zeros(u.max() + 1, dtype=np.int64)
    last[u] = np.arange(len(u))  # the last index per user wins
    train = np.ones(len(u), dtype=bool)
    train[last] = False
    x = sparse.csr_matrix((np.ones(train.sum(), dtype=np.float32), (u[train], i[train])), shape=(u.max() + 1, i.max() + 1))
    x.sum_duplicates()
    x.data[:] = 1.0
    test = {int(u[t]): int(i[t]) for t in last if x[u[t]].nnz > 0 and x[u[t], i[t]] == 0}
    users = np.array(sorted(test))
    if len(users) > 3000:
        users = np.sort(np.random.default_rng(0).choice(users, size=3000, replace=False))
    return x, test, users


def _ndcg_hr(x: sparse.csr_matrix, test: dict, users: np.ndarray, nb, k: int = 10) -> tuple[float, float]:
    n = x.shape[1]
    lists = sparse.csr_matrix((nb.scores.astype(np.float64), (nb.item_ids, nb.neighbor_ids)), shape=(n, n))
    ndcg = hits = 0.0
    for start in range(0, len(users), 1000):
        chunk = users[start:start + 1000]
        scores = (x[chunk] @ lists).toarray()
        scores[x[chunk].nonzero()] = 0.0
        for row, user in zip(scores, chunk):
            target = row[test[user]]
            if target <= 0:
                continue
            # rank among scored items, ties counted against the target
            rank = int((row > target).sum() + (row == target).sum() - 1)
            if rank < k:
                ndcg += 1.0 / np.log2(rank + 2)
                hits += 1
    return ndcg / len(users), hits / len(users)


def _quality() -> dict:
    from pgrecs import datasets

    out = {}
    for name in datasets.DATASETS:
        x, test, users = _leave_last_out(name)
        rows = {}
        for method, fit in CANDIDATES.items():
            started = time.perf_counter()
            nb = fit(x)
            seconds = time.perf_counter() - started
            ndcg, hr = _ndcg_hr(x, test, users, nb)
            rows[method] = {"ndcg@10": round(ndcg, 4), "hr@10": round(hr, 4), "fit_s": round(seconds, 2)}
        for row in rows.values():
            row["ndcg_vs_dense"] = round(row["ndcg@10"] / rows["dense"]["ndcg@10"], 3) if rows["dense"]["ndcg@10"] else None
        out[name] = {"items": x.shape[1], "users_evaluated": len(users), "methods": rows}
        print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)
    return out


def run() -> dict:
    shapes = real_shapes()
    cost = _cost(shapes)  # first: the fitting children fork from a small parent
    quality = _quality() if QUALITY else None
    big = [r for r in cost if r["method"] == "blocks" and r["items"] == max(SIZES)]
    dense = [r for r in cost if r["method"] == "dense" and "fit_s" in r]
    blocks_20k = [r for r in cost if r["method"] == "blocks" and r["items"] == DENSE_MAX and "fit_s" in r]
    head = big[0] if big else {}
    out = {
        "metric": f"EASE by blocks, fit at {max(SIZES):,} items",
        "value": head.get("fit_s"),
        "unit": "s",
        "target": "1,000,000 items: fit <= 1800 s and peak RSS <= 8 GiB",
        "met": bool(head) and head.get("items") == 1_000_000 and head.get("fit_s", 1e9) <= 1800
        and head.get("peak_rss_bytes", 1e18) <= 8 * 2**30,
        "note": (f"peak RSS {head.get('peak_rss_gib')} GiB; {head.get('interactions', 0):,} interactions; "
                 + (f"dense EASE at {DENSE_MAX:,} items {dense[0]['fit_s']} s, {dense[0]['peak_rss_gib']} GiB; "
                    f"blocks at {DENSE_MAX:,} {blocks_20k[0]['fit_s']} s" if dense and blocks_20k else "")),
        "events_per_item": EVENTS_PER_ITEM,
        "seed": SEED,
        "cost": cost,
        "quality": quality,
    }
    if dense and blocks_20k:
        out["baseline"] = dense[0]["fit_s"]
        out["baseline_note"] = f"dense EASE at {DENSE_MAX:,} items, same data, same command"
        out["ratio"] = round(blocks_20k[0]["fit_s"] / dense[0]["fit_s"], 3)
        out["ratio_note"] = f"fit time of EASE by blocks over dense EASE, both at {DENSE_MAX:,} items"
    return out


if __name__ == "__main__":  # the child: python -m benchmarks.bench_cf_scale fit METHOD MATRIX.npz
    if len(sys.argv) == 4 and sys.argv[1] == "fit":
        _child(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit("usage: python -m benchmarks.bench_cf_scale fit METHOD MATRIX.npz")
