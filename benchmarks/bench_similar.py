"""recs.similar_items at scale: p50/p99 latency and recall@10 against exact search, unfiltered
(ef_search sweep) and with 2% / 20% category filters, side by side with hnswlib at equal recall.

Vectors: 384-d, clustered (200 gaussian clusters, normalised, halfvec precision), like sentence
embeddings of a catalog. `python -m benchmarks.run similar`. Size: PGRECS_BENCH_SIMILAR_N (100000).
"""

from __future__ import annotations

import os
import time

import numpy as np

DIMS = 384


def clustered(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(200, DIMS)).astype(np.float32)
    v = centers[rng.integers(0, 200, n)] + 0.9 * rng.normal(size=(n, DIMS)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float16).astype(np.float32)


def _pct(values, q):
    return round(float(np.percentile(values, q)) * 1000, 3)


def run() -> dict:
    import psycopg
    from pgvector import HalfVector

    from app.db import connect
    from benchmarks.run import bench_server, fresh_database

    n = int(os.environ.get("PGRECS_BENCH_SIMILAR_N", "100000"))
    queries = int(os.environ.get("PGRECS_BENCH_SIMILAR_Q", "200"))
    vectors = clustered(n)
    # category: 2% 'Rare', 20% 'Common', the rest 'Other' (all active, priced, in stock)
    cat = np.where(np.arange(n) % 50 == 0, 0, np.where(np.arange(n) % 5 == 1, 1, 2))
    names = ["Rare", "Common", "Other"]
    result: dict = {"items": n, "queries": queries}
    with bench_server() as server, fresh_database(server, "bench_similar") as url:
        with connect(url) as conn:
            t = time.perf_counter()
            conn.execute("drop index pgrecs.item_embeddings_hnsw_m1")  # build after loading
            conn.execute(
                "insert into pgrecs.items (external_id, title, category_path, price, stock) "
                "select 'i' || g, 'item ' || g, array[(array['Rare','Common','Other'])[c + 1]], 10, 1 "
                "from unnest(%s::int[]) with ordinality as u(c, g) order by g", (cat.tolist(),))
            ids = np.array([r[0] for r in conn.execute("select item_id from pgrecs.items order by item_id")])
            conn.execute("delete from pgrecs.embedding_queue")
            with conn.cursor().copy("copy pgrecs.item_embeddings (item_id, model_id, embedding, text_sha256) "
                                    "from stdin with (format binary)") as copy:
                copy.set_types(["int8", "int2", "halfvec", "bytea"])
                for item_id, v in zip(ids, vectors):
                    copy.write_row((int(item_id), 1, HalfVector(v), b"\x00"))
            conn.commit()
            result["load_s"] = round(time.perf_counter() - t, 1)
            conn.execute("set maintenance_work_mem = '1GB'")
            conn.execute("set max_parallel_maintenance_workers = 1")
            t = time.perf_counter()
            conn.execute("select pgrecs.ensure_model_index(1::smallint)")
            conn.commit()
            result["hnsw_build_s"] = round(time.perf_counter() - t, 1)
        with connect(url, autocommit=True) as conn:
            conn.execute("vacuum analyze pgrecs.items")
            conn.execute("vacuum analyze pgrecs.item_embeddings")

        rng = np.random.default_rng(2)
        qidx = rng.choice(n, queries, replace=False)

        def exact(j, mask):
            sims = vectors @ vectors[j]
            sims[j] = -9
            if mask is not None:
                sims = np.where(mask, sims, -9)
            return set(ids[np.argsort(-sims)[:10]].tolist())

        def measure(conn, filters, mask, ef):
            conn.execute("update pgrecs.embedding_models set hnsw_ef_search = %s", (ef,))
            conn.commit()
            lat, hits = [], []
            for j in qidx:
                t = time.perf_counter()
                got = conn.execute("select item_id from recs.similar_items(%s, 10, %s::jsonb)",
                                   (int(ids[j]), filters)).fetchall()
                lat.append(time.perf_counter() - t)
                hits.append(len({r[0] for r in got} & exact(j, mask)) / 10)
            return {"recall_at_10": round(float(np.mean(hits)), 4), "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
                    "qps_1_client": round(len(lat) / sum(lat), 1)}

        with connect(url) as conn:
            sweep = {}
            for ef in (40, 64, 100, 200):
                sweep[ef] = measure(conn, "{}", None, ef)
            result["unfiltered_by_ef_search"] = sweep
            result["filter_2pct"] = {**measure(conn, '{"category": "Rare"}', cat == 0, 100),
                                     "strategy": conn.execute("select pgrecs.similarity_strategy('{\"category\": \"Rare\"}')").fetchone()[0]}
            result["filter_20pct"] = {**measure(conn, '{"category": "Common"}', cat == 1, 100),
                                      "strategy": conn.execute("select pgrecs.similarity_strategy('{\"category\": \"Common\"}')").fetchone()[0]}
            conn.execute("update pgrecs.embedding_models set hnsw_ef_search = 100")
            conn.commit()

    # hnswlib, same M / ef_construction, single thread, in process
    import hnswlib

    index = hnswlib.Index(space="cosine", dim=DIMS)
    index.init_index(max_elements=n, M=16, ef_construction=64, random_seed=1)
    index.set_num_threads(2)
    t = time.perf_counter()
    index.add_items(vectors, np.arange(n))
    result["hnswlib_build_s"] = round(time.perf_counter() - t, 1)
    index.set_num_threads(1)
    hn = {}
    for ef in (16, 24, 32, 40, 64, 100):
        index.set_ef(ef)
        t = time.perf_counter()
        labels, _ = index.knn_query(vectors[qidx], k=11)
        per_query = (time.perf_counter() - t) / len(qidx)
        recall = np.mean([len(set(ids[[l for l in row if l != j][:10]].tolist()) & exact(j, None)) / 10
                          for row, j in zip(labels, qidx)])
        hn[ef] = {"recall_at_10": round(float(recall), 4), "qps_1_thread": round(1 / per_query, 1)}
    result["hnswlib_by_ef"] = hn
    pg = result["unfiltered_by_ef_search"][100]
    at_equal = min((v for v in hn.values() if v["recall_at_10"] >= pg["recall_at_10"]),
                   key=lambda v: -v["qps_1_thread"], default=max(hn.values(), key=lambda v: v["recall_at_10"]))
    result["hnswlib_at_equal_recall"] = at_equal
    ratio = pg["qps_1_client"] / at_equal["qps_1_thread"]
    worst_recall = min(pg["recall_at_10"], result["filter_2pct"]["recall_at_10"], result["filter_20pct"]["recall_at_10"])
    worst_p99 = max(pg["p99_ms"], result["filter_2pct"]["p99_ms"], result["filter_20pct"]["p99_ms"])
    result.update({
        "metric": f"recs.similar_items p99 at {n:,} items (ef_search 100)", "value": pg["p99_ms"], "unit": "ms",
        "baseline": None, "target": "recall@10 >= 0.95, p99 <= 10 ms (unfiltered, 2%, 20%); >= 1/3 of hnswlib qps",
        "met": bool(worst_recall >= 0.95 and worst_p99 <= 10 and ratio >= 1 / 3),
        "note": f"recall {pg['recall_at_10']}, 2% {result['filter_2pct']['recall_at_10']}, "
                f"20% {result['filter_20pct']['recall_at_10']}; qps vs hnswlib at equal recall {ratio:.2f}",
    })
    return result
