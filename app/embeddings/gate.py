"""The evaluation gate (`pgrecs models evaluate NEW`): a candidate against the active model,
without leakage, stored in embedding_models.evaluation; `pgrecs models promote` reads the verdict.

Protocol: the time split at the candidate's training cut-off (`finetune --before`): the model
learnt only from events before it, so the events after it are unseen by both models. A model
trained on every event cannot be judged and is refused with a clear message.

Measured, per test user (the same users for both models, so differences are paired):
1. The semantic signal alone (placement weights {semantic: 1}), NDCG@10 and HR@10, through
   recs.recommend_for_user in a scratch database holding the training events only
   (pgrecs.evaluation.scratch), first with the active model's semantic lists, then with the
   candidate's (scratch.use_semantic_model); the paired bootstrap 95% interval of the NDCG@10
   difference.
2. The cold-start slice: HR@10 on test items never engaged before the cut-off.
3. The hybrid: the placement as configured (tuned by `pgrecs evaluate --tune`), NDCG@10 with each
   model's semantic lists.
4. Text-query search on held-out queries built from the catalog: every item first engaged after
   the cut-off (its text was in no training pair) gives one query, the first half of its title's
   words (at least two; the known-item searches of a shopper who remembers part of a name); the
   relevant answers are the items with that same composed text. HR@10 and MRR@10 through
   recs.search_by_vector with each model's query encoder and index.

Rules (all must hold, else the gate refuses): the semantic NDCG@10 difference's interval lies
above zero; cold-start HR@10 not lower; hybrid NDCG@10 not lower; search HR@10 not significantly
lower (its interval not wholly below zero).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from datetime import datetime, timezone

import numpy as np
from pgvector import HalfVector

from pgrecs.db import connect
from pgrecs.errors import PgrecsError
from pgrecs.evaluation import metrics, scratch, splits
from pgrecs.evaluation.data import load_catalog, load_interactions

K = 10
BOOTSTRAP_SAMPLES = 2000
SEARCH_QUERIES = 500


def _compare(candidate: list[float], current: list[float], seed: int) -> dict:
    """Candidate against the active model on the same paired units (users, queries): both means,
    the difference and its paired bootstrap 95% interval (metrics.paired_bootstrap)."""
    if not current:
        return {"active": 0.0, "candidate": 0.0, "difference": 0.0, "ci95": [0.0, 0.0], "ratio": None, "n": 0}
    cmp = metrics.paired_bootstrap(candidate, current, n_boot=BOOTSTRAP_SAMPLES, seed=seed)
    cur, cand = cmp["b"], cmp["a"]
    return {"active": round(cur, 6), "candidate": round(cand, 6), "difference": round(cmp["diff"], 6),
            "ci95": [round(cmp["low"], 6), round(cmp["high"], 6)], "ratio": round(cand / cur, 4) if cur else None,
            "n": cmp["users"]}


def _per_user(recs: dict, truth: dict, users: list[int]) -> dict[str, list[float]]:
    rows = [metrics.user_ranking_metrics(recs.get(u, np.empty(0, dtype=np.int64)), truth[u], K) for u in users]
    return {"ndcg": [r["ndcg"] for r in rows], "hit_rate": [r["hit_rate"] for r in rows]}


def _window(lineage: dict | None, name: str) -> datetime:
    before = ((lineage or {}).get("window") or {}).get("before")
    if before is None:
        raise PgrecsError(f"model {name} was trained on every event: the gate needs events it never saw; "
                          "fine-tune with --before DATE")
    return datetime.fromisoformat(before)


def _search_queries(conn, tenant: str, cold_item_ids: list[int], seed: int) -> list[tuple[str, set[int]]]:
    """The first half (at least two words) of each held-out item's cleaned title, as a shopper would
    type it (never markup the catalog carries), with every item of the same embedded text relevant."""
    rows = conn.execute(
        """
        select i.item_id, pgrecs.clean_text(i.title), t.txt
        from pgrecs.items as i
        cross join lateral (
            select pgrecs.compose_item_text(i.title, i.description, i.brand, i.category_path, i.attributes) as txt
        ) as t
        where i.tenant_id = %s and i.active and pgrecs.item_text_problem(t.txt) is null
        """, (tenant,)).fetchall()
    by_text: dict[str, set[int]] = {}
    for item_id, _, text in rows:
        by_text.setdefault(text, set()).add(item_id)
    held_out = set(cold_item_ids)
    queries = []
    for item_id, title, text in sorted(rows):
        words = (title or "").split()
        if item_id not in held_out or len(words) < 2:
            continue
        queries.append((" ".join(words[:max(2, (len(words) + 1) // 2)]), by_text[text]))
    rng = np.random.default_rng(seed)
    if len(queries) > SEARCH_QUERIES:
        queries = [queries[i] for i in sorted(rng.choice(len(queries), SEARCH_QUERIES, replace=False))]
    return queries


def _search(conn, spec, queries: list[tuple[str, set[int]]]) -> dict[str, list[float]]:
    from pgrecs.embeddings.models import encoder_for

    vectors = encoder_for(spec).encode([q for q, _ in queries]) if queries else []
    hits, rr = [], []
    for (_, relevant), vector in zip(queries, vectors):
        ranked = [r[0] for r in conn.execute(
            "select s.item_id from recs.search_by_vector(query_embedding => %s, k => %s, model => %s) as s "
            "order by s.rank", (HalfVector(vector), K, spec.name))]
        first = next((rank for rank, item in enumerate(ranked, 1) if item in relevant), None)
        hits.append(1.0 if first else 0.0)
        rr.append(1.0 / first if first else 0.0)
    return {"hit_rate": hits, "mrr": rr}


def evaluate_candidate(url: str | None, tenant: str, name: str, *, placement: str = "home_for_you",
                       max_users: int | None = None, seed: int = 0, progress=None) -> dict:
    """Compare candidate `name` with the active model; store and return the evaluation."""
    from pgrecs.db import database_url
    from pgrecs.embeddings.models import load_spec

    def say(message: str) -> None:
        if progress:
            progress(message)

    url = url or database_url()
    started = time.perf_counter()
    with connect(url, tenant=tenant) as conn:
        candidate, active = load_spec(conn, name), load_spec(conn, None)
        if candidate.is_default:
            raise PgrecsError(f"model {name} is the active model: evaluate a candidate against it")
        lineage = conn.execute("select lineage from pgrecs.embedding_models where model_id = %s",
                               (candidate.model_id,)).fetchone()[0]
        cutoff = _window(lineage, name)
        for spec in (active, candidate):
            stale, = conn.execute("select coalesce(sum(c.stale + c.queued), 0) from pgrecs.model_completeness(%s::smallint) as c "
                                  "where c.tenant_id = %s", (spec.model_id, tenant)).fetchone()
            if stale:
                raise PgrecsError(f"model {spec.name} has {stale} items to embed: run pgrecs embed first")
        if not conn.execute("select 1 from pgrecs.placements where tenant_id = %s and placement = %s",
                            (tenant, placement)).fetchone():
            raise PgrecsError(f"unknown placement {placement!r} for the hybrid comparison")
        catalog = load_catalog(conn, tenant, with_embeddings=False)
        inter = load_interactions(conn, tenant, catalog)
    if len(inter) == 0:
        raise PgrecsError("no events loaded: load events first (pgrecs load events FILE)")
    split = splits.time_split(inter, cutoff=cutoff.timestamp(), cold_targets=True)
    users = sorted(split.test)
    if max_users is not None and max_users < len(users):
        rng = np.random.default_rng(seed)
        users = sorted(rng.choice(users, size=max_users, replace=False).tolist())
    truth = {u: split.test[u] for u in users}
    cold = split.cold_items(inter)
    cold_users = [u for u in users if truth[u] & cold]
    cold_truth = {u: truth[u] & cold for u in cold_users}
    train_items = split.train_items_by_user(inter)
    say(f"time split at {cutoff.isoformat()}: {len(users)} test users, {len(cold_users)} with cold-start items")

    scores: dict[str, dict] = {}
    with scratch.scratch_database(url, "gate") as scratch_url:
        scratch.populate(url, scratch_url, tenant, inter.event_id[split.train_mask])
        # the refresh reports on stdout; it is progress here (stdout carries the result)
        with contextlib.redirect_stdout(sys.stderr):
            scratch.refresh(scratch_url, tenant)
        with connect(scratch_url, tenant=tenant) as conn:
            scratch.add_placement(conn, tenant, "eval_semantic", placement, scratch.signal_overrides({"semantic": 1.0}))
        strategies = {
            "semantic": scratch.SQLStrategy(scratch_url, tenant, "eval_semantic", catalog, inter, train_items),
            "hybrid": scratch.SQLStrategy(scratch_url, tenant, placement, catalog, inter, train_items),
        }
        for which, spec in (("active", active), ("candidate", candidate)):
            if which == "candidate":
                scratch.use_semantic_model(scratch_url, tenant, spec.name)
            for strategy_name, strategy in strategies.items():
                recs = strategy.recommend(users, K)
                scores[f"{strategy_name}:{which}"] = _per_user(recs, truth, users)
                if strategy_name == "semantic":
                    scores[f"cold:{which}"] = _per_user(recs, cold_truth, cold_users)
            say(f"scored the semantic signal and the hybrid with {which} model {spec.name}")

    cold_ids = [int(catalog.item_ids[c]) for c in cold]
    with connect(url, tenant=tenant) as conn:
        queries = _search_queries(conn, tenant, cold_ids, seed)
        search = {which: _search(conn, spec, queries) for which, spec in (("active", active), ("candidate", candidate))}
    say(f"{len(queries)} held-out search queries")

    result = {
        "active": {"model_id": active.model_id, "name": active.name},
        "candidate": {"model_id": candidate.model_id, "name": candidate.name},
        "protocol": {"split": "time-split at the training cut-off", "cutoff": cutoff.isoformat(), "k": K,
                     "users": len(users), "cold_start_users": len(cold_users), "placement": placement,
                     "bootstrap": {"samples": BOOTSTRAP_SAMPLES, "seed": seed, "level": 0.95},
                     "search_queries": len(queries)},
        "semantic": {
            "ndcg@10": _compare(scores["semantic:candidate"]["ndcg"], scores["semantic:active"]["ndcg"], seed),
            "hit_rate@10": _compare(scores["semantic:candidate"]["hit_rate"], scores["semantic:active"]["hit_rate"], seed),
        },
        "cold_start": {"hit_rate@10": _compare(scores["cold:candidate"]["hit_rate"], scores["cold:active"]["hit_rate"], seed)},
        "hybrid": {"ndcg@10": _compare(scores["hybrid:candidate"]["ndcg"], scores["hybrid:active"]["ndcg"], seed)},
        "search": {"hit_rate@10": _compare(search["candidate"]["hit_rate"], search["active"]["hit_rate"], seed),
                   "mrr@10": _compare(search["candidate"]["mrr"], search["active"]["mrr"], seed)},
        "seconds": round(time.perf_counter() - started, 1),
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    result["gate"] = verdict(result)
    with connect(url, tenant=tenant) as conn:
        conn.execute("update pgrecs.embedding_models set evaluation = %s::jsonb where model_id = %s",
                     (json.dumps(result), candidate.model_id))
    return result


def verdict(result: dict) -> dict:
    """The gate's rules over an evaluation: every rule with its outcome, and the first failure."""
    semantic = result["semantic"]["ndcg@10"]
    cold = result["cold_start"]["hit_rate@10"]
    hybrid = result["hybrid"]["ndcg@10"]
    search = result["search"]["hit_rate@10"]
    rules = [
        ("semantic NDCG@10 improves beyond its 95% interval", semantic["ci95"][0] > 0,
         f"semantic NDCG@10 {semantic['candidate']:.4f} vs {semantic['active']:.4f}, "
         f"95% interval of the difference [{semantic['ci95'][0]:+.4f}, {semantic['ci95'][1]:+.4f}] not above zero"),
        ("cold-start HR@10 not lower", cold["n"] == 0 or cold["candidate"] >= cold["active"],
         f"cold-start HR@10 {cold['candidate']:.4f} is lower than {cold['active']:.4f}"),
        ("hybrid NDCG@10 not lower", hybrid["candidate"] >= hybrid["active"],
         f"hybrid NDCG@10 {hybrid['candidate']:.4f} is lower than {hybrid['active']:.4f}"),
        ("search HR@10 not significantly lower", search["n"] == 0 or search["ci95"][1] >= 0,
         f"search HR@10 {search['candidate']:.4f} is below {search['active']:.4f} beyond its 95% interval"),
    ]
    failed = [message for _, ok, message in rules if not ok]
    return {"passed": not failed, "reason": failed[0] if failed else None,
            "rules": [{"rule": rule, "passed": ok} for rule, ok, _ in rules]}
