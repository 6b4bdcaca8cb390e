"""Ranking and beyond-accuracy metrics.

Ranking metrics use binary relevance and the standard definitions (checked against ranx in
tests/test_evaluation_metrics.py): precision@k = hits/k; recall@k = hits/|relevant|;
NDCG@k with gain 1 and log2(rank+1) discount, ideal DCG over min(|relevant|, k);
AP@k = sum of precision@i at each relevant rank i <= k, divided by |relevant| (ranx's MAP);
hit rate@k = 1 if any hit; MRR@k = 1/rank of the first hit (0 if none in the top k).
Each is averaged over test users.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

RANKING_METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")


def user_ranking_metrics(ranked: list[int] | np.ndarray, relevant: set[int], k: int) -> dict[str, float]:
    top = list(ranked[:k])
    hits = np.array([1.0 if i in relevant else 0.0 for i in top])
    n_rel = len(relevant)
    if n_rel == 0:
        raise ValueError("a test user needs at least one relevant item")
    positions = np.arange(1, len(top) + 1)
    dcg = float((hits / np.log2(positions + 1)).sum())
    idcg = float((1.0 / np.log2(np.arange(1, min(n_rel, k) + 1) + 1)).sum())
    precision_at = np.cumsum(hits) / positions
    first = np.flatnonzero(hits)
    return {
        "precision": float(hits.sum()) / k,
        "recall": float(hits.sum()) / n_rel,
        "ndcg": dcg / idcg,
        "map": float((precision_at * hits).sum()) / n_rel,
        "hit_rate": 1.0 if hits.any() else 0.0,
        "mrr": 1.0 / (first[0] + 1) if len(first) else 0.0,
    }


def ranking_metrics(recs: dict[int, np.ndarray], test: dict[int, set[int]], ks=(5, 10, 20),
                    users: set[int] | None = None) -> dict[str, float]:
    """Mean of each ranking metric at each k over the test users (optionally a slice of them).
    A user with no list counts as all zeros."""
    users = sorted(test if users is None else users & test.keys())
    out: dict[str, float] = {}
    if not users:
        return out
    for k in ks:
        sums = dict.fromkeys(RANKING_METRICS, 0.0)
        for u in users:
            m = user_ranking_metrics(recs.get(u, np.empty(0, dtype=np.int64)), test[u], k)
            for name in RANKING_METRICS:
                sums[name] += m[name]
        for name in RANKING_METRICS:
            out[f"{name}@{k}"] = sums[name] / len(users)
    return out


def item_popularity(train_users: np.ndarray, train_items: np.ndarray, n_items: int) -> np.ndarray:
    """Distinct training users per item."""
    if len(train_users) == 0:
        return np.zeros(n_items)
    pairs = np.unique(np.stack([train_users, train_items]), axis=1)
    return np.bincount(pairs[1], minlength=n_items).astype(np.float64)


def gini(values) -> float:
    """Gini coefficient of non-negative values (0 = equal exposure, -> 1 = all on one)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    cum = np.cumsum(x)
    return float((n + 1 - 2 * (cum / cum[-1]).sum()) / n)


def beyond_accuracy(recs: dict[int, np.ndarray], k: int, n_items: int, popularity: np.ndarray,
                    n_train_users: int, embeddings: np.ndarray | None = None,
                    brands: np.ndarray | None = None, categories: np.ndarray | None = None) -> dict[str, float]:
    """Catalog coverage, intra-list diversity (mean pairwise cosine distance of embeddings),
    novelty (mean self-information -log2 p(i), p(i) = training users of i / training users,
    add-one smoothed), popularity bias (mean popularity percentile, 1 = most popular) and
    exposure Gini over brands and categories (catalogue groups with no exposure count as 0)."""
    lists = [np.asarray(r[:k], dtype=np.int64) for r in recs.values() if len(r)]
    out: dict[str, float] = {}
    if not lists:
        return out
    flat = np.concatenate(lists)
    out[f"coverage@{k}"] = len(np.unique(flat)) / n_items
    p = (popularity + 1.0) / (n_train_users + 1.0)
    out[f"novelty@{k}"] = float(np.mean(-np.log2(p[flat])))
    # percentile rank of popularity among catalogue items (ties share the mean rank)
    from scipy.stats import rankdata

    percentile = (rankdata(popularity, method="average") - 1) / max(n_items - 1, 1)
    out[f"popularity_bias@{k}"] = float(np.mean(percentile[flat]))
    if embeddings is not None:
        distances = []
        for lst in lists:
            vecs = embeddings[lst]
            vecs = vecs[~np.isnan(vecs).any(axis=1)]
            if len(vecs) >= 2:
                sim = vecs @ vecs.T
                iu = np.triu_indices(len(vecs), 1)
                distances.append(float(np.mean(1.0 - sim[iu])))
        if distances:
            out[f"diversity@{k}"] = float(np.mean(distances))
    for name, groups in (("brand", brands), ("category", categories)):
        if groups is None:
            continue
        known = [g for g in groups if g is not None]
        if not known:
            continue
        exposure = Counter(groups[i] for i in flat if groups[i] is not None)
        out[f"gini_{name}@{k}"] = gini([exposure.get(g, 0) for g in set(known)])
    return out


def revenue_at_k(recs: dict[int, np.ndarray], test: dict[int, set[int]], values: np.ndarray, k: int,
                 users=None) -> dict[str, float]:
    """Revenue-weighted hits: per user, the summed value (price, or margin) of the relevant items
    in the top k, averaged over users (`value`), and that as a share of the summed value of all
    their relevant items (`share`: 1 = every held-out purchase caught; a plain hit rate weighted by
    what the hits are worth). Items of unknown value count 0."""
    users = sorted(test if users is None else set(users) & test.keys())
    caught = np.zeros(len(users))
    total = np.zeros(len(users))
    vals = np.nan_to_num(values, nan=0.0)
    for n, u in enumerate(users):
        rel = test[u]
        top = recs.get(u, np.empty(0, dtype=np.int64))[:k]
        # sums in item order, not set order: the same digits however the sets were built
        caught[n] = sum(vals[i] for i in sorted(int(i) for i in top if int(i) in rel))
        total[n] = sum(vals[i] for i in sorted(rel))
    if not users:
        return {}
    return {"value": float(caught.mean()), "share": float(caught.sum() / total.sum()) if total.sum() > 0 else 0.0}


def per_user(recs: dict[int, np.ndarray], test: dict[int, set[int]], users, metric: str, k: int) -> np.ndarray:
    """One ranking metric per user, in the order of `users` (a user with no list scores 0)."""
    return np.array([user_ranking_metrics(recs.get(u, np.empty(0, dtype=np.int64)), test[u], k)[metric]
                     for u in users])


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Paired bootstrap over users of mean(a) - mean(b) and mean(a) / mean(b): the same resampled
    users for both (percentile interval at `level`, seeded). `better` says whether the interval
    of the difference lies above zero, `worse` below it."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or len(a) == 0:
        raise ValueError("paired samples of the same non-zero length are needed")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    ma, mb = a[idx].mean(axis=1), b[idx].mean(axis=1)
    diffs = ma - mb
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(diffs, [tail, 100 - tail])
    out = {"a": float(a.mean()), "b": float(b.mean()), "diff": float(a.mean() - b.mean()),
           "low": float(lo), "high": float(hi), "users": int(len(a)), "resamples": n_boot, "seed": seed,
           "better": bool(lo > 0), "worse": bool(hi < 0)}
    if b.mean() > 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(mb > 0, ma / np.where(mb > 0, mb, 1), np.nan)
        ratios = ratios[np.isfinite(ratios)]
        out["ratio"] = float(a.mean() / b.mean())
        if len(ratios):
            out["ratio_low"], out["ratio_high"] = (float(x) for x in np.percentile(ratios, [tail, 100 - tail]))
    return out
