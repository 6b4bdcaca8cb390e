"""What one call can cost: a SQL round trip against hnswlib's in-process query, in one run.

Per-call queries/s (one client, one thread, one query at a time, prepared statements over the
embedded server's Unix socket), interleaved in rounds and reported as medians:

    select 1                  the client-server round trip alone: no SQL read can be faster
    list read                 the item's 10 best entries of item_neighbors (index-only scan on
                              item_neighbors_ranked), nothing joined
    recs.similar_items        the maintained-list path (unfiltered, k 10), as served
    hnswlib knn_query         one vector, k 10, at the ef that gives recall@10 >= 0.95 on these
                              vectors (found by a sweep against exact search)

Data: PGRECS_BENCH_FLOOR_N items (100,000) with 50-entry semantic lists; hnswlib indexes N
vectors drawn like the similar-items benchmark's `realistic` data (a density estimate of real
MiniLM embeddings of the shared datasets' texts, benchmarks.bench_similar.realistic). The ratio is recs.similar_items / hnswlib: how far the
served path is from an in-process index, and how far any SQL call (select 1) could get.
"""

from __future__ import annotations

import os
import time

import numpy as np

N = int(os.environ.get("PGRECS_BENCH_FLOOR_N", 100_000))
CALLS = int(os.environ.get("PGRECS_BENCH_FLOOR_CALLS", 2000))
ROUNDS = 5
LIST_LENGTH, K, DIM = 50, 10, 384  # DIM: all-MiniLM-L6-v2


def _per_call_qps(call, args: list) -> float:
    started = time.perf_counter()
    for a in args:
        call(a)
    return len(args) / (time.perf_counter() - started)


def _hnswlib_index(vectors: np.ndarray, rng: np.random.Generator):
    import hnswlib

    index = hnswlib.Index(space="cosine", dim=DIM)
    index.init_index(max_elements=N, M=16, ef_construction=64, random_seed=0)
    index.add_items(vectors, num_threads=os.cpu_count())
    index.set_num_threads(1)
    queries = vectors[rng.choice(N, 200, replace=False)]
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :K]
    for ef in (10, 16, 20, 24, 32, 40, 64, 100, 200):
        index.set_ef(ef)
        found, _ = index.knn_query(queries, k=K)
        recall = float(np.mean([len(set(f) & set(e)) / K for f, e in zip(found, exact)]))
        if recall >= 0.95:
            return index, vectors, ef, recall
    return index, vectors, ef, recall


def run() -> dict:
    import psycopg

    from benchmarks.run import bench_server, fresh_database, median

    from benchmarks.bench_similar import realistic

    rng = np.random.default_rng(0)
    with bench_server() as server, fresh_database(server, "bench_call_floor") as url:
        vectors, _ = realistic(server, N)
        index, vectors, ef, recall = _hnswlib_index(vectors, rng)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("insert into pgrecs.items (external_id, title, price, stock) "
                         "select 'i' || g, 'item ' || g, 10, 1 from generate_series(1, %s) as g", (N,))
            conn.execute("truncate pgrecs.embedding_queue")
            conn.execute(
                "insert into pgrecs.item_neighbors (signal, item_id, neighbor_item_id, score, rank) "
                "select 'semantic', i.item_id, n.item_id, (1 - r / 100.0)::real, r "
                "from pgrecs.items as i cross join generate_series(1, %s) as r "
                "join pgrecs.items as n on n.item_id = (i.item_id + r * 7919) %% %s + 1", (LIST_LENGTH, N))
            conn.execute("vacuum analyze pgrecs.item_neighbors")
            conn.execute("vacuum analyze pgrecs.items")
            low, high = conn.execute("select min(item_id), max(item_id) from pgrecs.items").fetchone()

            def sql_call(statement: str):
                def call(item_id: int):
                    conn.execute(statement, {"item": item_id}, prepare=True).fetchall()
                return call

            calls = {
                "select_1": sql_call("select 1 where %(item)s::bigint is not null"),
                "list_read": sql_call(
                    "select neighbor_item_id, score from pgrecs.item_neighbors where tenant_id = 'default' "
                    "and signal = 'semantic' and item_id = %(item)s order by rank limit 10"),
                "similar_items": sql_call("select * from recs.similar_items(item_id => %(item)s, k => 10)"),
                "hnswlib": lambda i: index.knn_query(vectors[i % N], k=K),
            }
            served = conn.execute("select count(*) from recs.similar_items(item_id => %s, k => 10)", (low,)).fetchone()[0]
            index.set_ef(ef)
            rates: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(ROUNDS):
                args = [int(x) for x in rng.integers(low, high + 1, CALLS)]
                for name, call in calls.items():
                    for a in args[:100]:  # warm the plan cache and the pages
                        call(a)
                    rates[name].append(_per_call_qps(call, args))
    qps = {name: round(median(values), 1) for name, values in rates.items()}
    ratio = qps["similar_items"] / qps["hnswlib"]
    return {
        "metric": "recs.similar_items (maintained list) queries/s per call, 1 client",
        "value": qps["similar_items"], "unit": "q/s", "baseline": qps["hnswlib"],
        "baseline_note": f"hnswlib knn_query of one vector, 1 thread, ef {ef} (recall@10 {recall:.3f}), {N:,} vectors",
        "ratio": ratio, "target": ">= 1.0x hnswlib per call", "met": ratio >= 1.0,
        "items": N, "list_length": LIST_LENGTH, "k": K, "calls_per_round": CALLS, "rounds": ROUNDS,
        "rows_served": served,
        "qps_per_call": qps,
        "qps_rounds": {name: [round(v, 1) for v in values] for name, values in rates.items()},
        "ratios_vs_hnswlib": {name: round(v / qps["hnswlib"], 3) for name, v in qps.items()},
        "note": (f"per call: select 1 {qps['select_1']:.0f} q/s, a bare 10-row list read {qps['list_read']:.0f}, "
                 f"recs.similar_items {qps['similar_items']:.0f}, hnswlib {qps['hnswlib']:.0f} "
                 f"(select 1 / hnswlib {qps['select_1'] / qps['hnswlib']:.2f}x)"),
    }
