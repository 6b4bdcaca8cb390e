"""Recipe search for `pgrecs models finetune`, on validation only.

    python -m benchmarks.finetune_recipes --db-url URL --dataset NAME [--recipe JSON] [--mixes 0.5,1]
    python -m benchmarks.finetune_recipes --table     (Markdown table of every recipe tried)

The database holds one dataset, loaded and embedded with the base model. The protocol is the one
`pgrecs evaluate --protocol time-split` uses (train before the 80th percentile of event times),
and inside its training part the validation split that tuning uses (train before the 80th
percentile of the training events, validate on the events after it up to the test cut-off): the
test period is never read. A recipe is fine-tuned on the events before the validation cut-off;
every weight mix of it is scored by the semantic signal alone, computed here as
recs.recommend_for_user computes it with semantic weight 1 (each user's 20 heaviest history items
by event weight and 14-day recency decay, their 50 nearest items by cosine, summed anchor weight x
cosine, history items left out), so many recipes fit in the CPU time one SQL evaluation takes.
The chosen recipe is then confirmed on test through `pgrecs evaluate`.

Every run appends one record to benchmarks/results/finetune_recipes.json: the recipe, its pairs
by source, training time and, per mix, validation NDCG@10, HR@10 and cold-start HR@10 next to the
base model's on the same users.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy import sparse

from benchmarks.run import RESULTS, machine_info
from pgrecs.db import connect
from pgrecs.embeddings import finetune, gate
from pgrecs.embeddings.models import load_spec, resolve_source
from pgrecs.evaluation import metrics, splits
from pgrecs.evaluation.data import load_catalog, load_interactions

OUT = RESULTS / "finetune_recipes.json"
HISTORY_LIMIT, HISTORY_EVENTS, HALF_LIFE_S, NEIGHBORS, K = 20, 200, 14 * 86400.0, 50, 10


def validation_setup(url: str, tenant: str = "default") -> dict:
    with connect(url, tenant=tenant) as conn:
        catalog = load_catalog(conn, tenant, with_embeddings=False)
        inter = load_interactions(conn, tenant, catalog)
        type_weight = dict(conn.execute("select event_type, default_weight from pgrecs.event_types").fetchall())
        events = conn.execute(
            "select e.event_id, e.event_type from pgrecs.events e where e.tenant_id = %s", (tenant,)).fetchall()
        texts = conn.execute(
            """
            select i.item_id, t.txt
            from pgrecs.items i
            cross join lateral (select pgrecs.compose_item_text(i.title, i.description, i.brand, i.category_path,
                                                                i.attributes) as txt) t
            where i.tenant_id = %s and i.active and pgrecs.item_text_problem(t.txt) is null
            """, (tenant,)).fetchall()
    kind = dict(events)
    weights = np.array([type_weight[kind[int(e)]] for e in inter.event_id])
    split = splits.time_split(inter)
    v_inter, v_split = splits.validation_split(inter, split)
    v_weights = weights[split.train_mask]
    embeddable = np.zeros(catalog.size, dtype=bool)
    text = [""] * catalog.size
    for item_id, txt in texts:
        code = catalog.code_of.get(int(item_id))
        if code is not None:
            embeddable[code], text[code] = True, txt
    train = v_split.train_mask
    return {"catalog": catalog, "inter": v_inter, "split": v_split, "weights": v_weights[train],
            "train": v_inter.subset(train), "embeddable": embeddable, "text": text,
            "cutoff": datetime.fromtimestamp(v_split.cutoff, tz=timezone.utc), "test_cutoff": split.cutoff}


def anchors(setup: dict) -> sparse.csr_matrix:
    """users x items: the summed decayed weight of each user's top HISTORY_LIMIT history items."""
    tr, w = setup["train"], setup["weights"]
    n_users, n_items = len(tr.user_ids), setup["catalog"].size
    rows, cols, vals = [], [], []
    order = np.lexsort((-tr.event_id, -tr.ts, tr.user))
    users = tr.user[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(order)]
    for s, e in zip(starts, ends):
        idx = order[s:e][:HISTORY_EVENTS]
        latest = tr.ts[idx].max()
        decayed = w[idx] * np.exp(-np.log(2) * np.minimum((latest - tr.ts[idx]) / HALF_LIFE_S, 700))
        items, inv = np.unique(tr.item[idx], return_inverse=True)
        sums = np.bincount(inv, weights=decayed)
        keep = np.lexsort((items, -sums))[:HISTORY_LIMIT]
        keep = keep[sums[keep] > 0]
        rows += [int(tr.user[idx[0]])] * len(keep)
        cols += items[keep].tolist()
        vals += sums[keep].tolist()
    return sparse.csr_matrix((vals, (rows, cols)), shape=(n_users, n_items))


def semantic_scores(setup: dict, emb: np.ndarray, users: list[int], anchor: sparse.csr_matrix) -> dict[int, np.ndarray]:
    """Top-K items per user by the semantic signal (neighbour lists from the embeddings)."""
    ok = setup["embeddable"]
    n = len(ok)
    e = np.zeros((n, emb.shape[1]), dtype=np.float32)
    e[ok] = emb[ok]
    sims = e @ e.T
    sims[:, ~ok] = -np.inf
    np.fill_diagonal(sims, -np.inf)
    top = np.argpartition(-sims, NEIGHBORS, axis=1)[:, :NEIGHBORS]
    vals = np.take_along_axis(sims, top, axis=1)
    rows = np.repeat(np.arange(n), NEIGHBORS)
    mask = ok[rows] & np.isfinite(vals.ravel())
    nb = sparse.csr_matrix((vals.ravel()[mask], (rows[mask], top.ravel()[mask])), shape=(n, n))
    scores = (anchor[users] @ nb).toarray()
    seen = setup["seen"]
    out = {}
    for r, u in enumerate(users):
        s = scores[r]
        cand = np.flatnonzero(s > 0)
        cand = cand[~np.isin(cand, seen.get(u, ()))]
        out[u] = cand[np.lexsort((cand, -s[cand]))][:K]
    return out


def score_embeddings(setup: dict, emb: np.ndarray) -> dict:
    truth = setup["split"].test
    users = sorted(truth)
    recs = semantic_scores(setup, emb, users, setup["anchor"])
    cold = setup["cold"]
    per_user = [metrics.user_ranking_metrics(recs[u], truth[u], K) for u in users]
    cold_users = [u for u in users if truth[u] & cold]
    cold_hits = [float(bool(set(recs[u].tolist()) & truth[u] & cold)) for u in cold_users]
    return {"ndcg@10": float(np.mean([m["ndcg"] for m in per_user])),
            "hit_rate@10": float(np.mean([m["hit_rate"] for m in per_user])),
            "cold_hit_rate@10": float(np.mean(cold_hits)) if cold_hits else None,
            "users": len(users), "cold_users": len(cold_users),
            "per_user_ndcg": [m["ndcg"] for m in per_user]}


def encode(model, setup: dict) -> np.ndarray:
    ok = setup["embeddable"]
    out = np.zeros((len(ok), model.get_embedding_dimension()), dtype=np.float32)
    texts = [setup["text"][i] for i in np.flatnonzero(ok)]
    out[ok] = model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
    return out


def paired_ci(candidate: list[float], base: list[float], seed: int = 0) -> list[float]:
    cmp = metrics.paired_bootstrap(candidate, base, n_boot=gate.BOOTSTRAP_SAMPLES, seed=seed)
    return [cmp["low"], cmp["high"]]


def markdown_table(results: dict) -> str:
    """Every recipe tried: validation NDCG@10 / HR@10 / cold-start HR@10 of each weight mix next
    to the base model's, pairs and training time."""
    lines = ["| dataset | recipe | pairs (by source) | training s | mix | NDCG@10 (base) | HR@10 (base) "
             "| cold HR@10 (base) | NDCG@10 ratio [95% CI of the difference] |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in results["runs"]:
        r = run["recipe"]
        recipe = (f"lr {r['learning_rate']:g}, {r['epochs']} epoch(s), <= {r['max_pairs']} pairs, {r['per_item']} per item, "
                  f"length {r['max_seq_length']}, batch {r['batch_size']}{', hard negatives' if r['hard_negatives'] else ''}")
        sources = ", ".join(f"{k} {v}" for k, v in sorted(run["pairs_by_source"].items()))
        base = run["base"]
        for mix, m in run["mixes"].items():
            cold = "-" if m["cold_hit_rate@10"] is None else f"{m['cold_hit_rate@10']:.3f} ({base['cold_hit_rate@10']:.3f})"
            lo, hi = m["ndcg_ci_vs_base"]
            lines.append(f"| {run['dataset']} | {run['label']}: {recipe} | {run['pairs']} ({sources}) | "
                         f"{run['training_seconds']:.0f} | {mix} | {m['ndcg@10']:.4f} ({base['ndcg@10']:.4f}) | "
                         f"{m['hit_rate@10']:.3f} ({base['hit_rate@10']:.3f}) | {cold} | "
                         f"{m['ndcg_ratio_vs_base']:.3f} [{lo:+.4f}, {hi:+.4f}] |")
    return "\n".join(lines)


def chosen_recipe(results: dict, dataset: str) -> dict | None:
    """The recipe validation chose on `dataset`: the run and weight mix with the best NDCG@10 ratio
    over the base model among those whose cold-start HR@10 is not lower than the base model's; when
    none keeps cold-start HR@10, the best ratio overall, marked `keeps_cold_start: False`. The
    recipe is the run's, with the chosen mix. None when no run of the dataset is recorded."""
    candidates = []
    for run in results.get("runs", []):
        if run["dataset"] != dataset:
            continue
        base_cold = run["base"]["cold_hit_rate@10"]
        for mix, m in run["mixes"].items():
            if m["ndcg_ratio_vs_base"] is None:
                continue
            keeps = base_cold is None or m["cold_hit_rate@10"] is None or m["cold_hit_rate@10"] >= base_cold
            candidates.append((keeps, m["ndcg_ratio_vs_base"], run, mix, m))
    if not candidates:
        return None
    keeps, ratio, run, mix, m = max(candidates, key=lambda c: (c[0], c[1]))
    return {"dataset": dataset, "label": run["label"], "validation_cutoff": run["validation_cutoff"],
            "recipe": {**run["recipe"], "mix": float(mix)}, "ndcg_ratio_vs_base": ratio,
            "ndcg_ci_vs_base": m["ndcg_ci_vs_base"], "cold_hit_rate@10": m["cold_hit_rate@10"],
            "base_cold_hit_rate@10": run["base"]["cold_hit_rate@10"], "keeps_cold_start": keeps}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--table", action="store_true", help="print the Markdown table of every recipe tried and exit")
    parser.add_argument("--db-url")
    parser.add_argument("--dataset")
    parser.add_argument("--recipe", default="{}", help="JSON of Recipe fields that differ from the defaults")
    parser.add_argument("--mixes", default="1.0")
    parser.add_argument("--label", default=None)
    parser.add_argument("--base", default="all-MiniLM-L6-v2")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(OUT.read_text())))
        return 0
    if not (args.db_url and args.dataset):
        parser.error("--db-url and --dataset are required")

    setup = validation_setup(args.db_url)
    tr = setup["train"]
    setup["seen"] = {}
    for u, i in zip(tr.user, tr.item):
        setup["seen"].setdefault(int(u), set()).add(int(i))
    setup["seen"] = {u: np.fromiter(s, dtype=np.int64) for u, s in setup["seen"].items()}
    setup["cold"] = setup["split"].cold_items(setup["inter"])
    setup["anchor"] = anchors(setup)

    from sentence_transformers import SentenceTransformer

    with connect(args.db_url) as conn:
        base_path = resolve_source(load_spec(conn, args.base).source)
    cache = Path(f"/tmp/pgrecs_ft_base_{args.dataset}.npy")
    if cache.exists():
        base_emb = np.load(cache)
    else:
        base_emb = encode(SentenceTransformer(str(base_path), device="cpu", local_files_only=True), setup)
        np.save(cache, base_emb)
    base = score_embeddings(setup, base_emb)
    print(f"base: {json.dumps({k: v for k, v in base.items() if k != 'per_user_ndcg'})}", flush=True)

    overrides = json.loads(args.recipe)
    if "sources" in overrides:
        overrides["sources"] = tuple(overrides["sources"])
    recipe = replace(finetune.Recipe(), **overrides)
    with connect(args.db_url) as conn:
        pairs = finetune.mine_pairs(conn, setup["cutoff"], recipe)
        if recipe.hard_negatives:
            miner = SentenceTransformer(str(base_path), device="cpu", local_files_only=True)
            finetune.add_hard_negatives(conn, miner, pairs, setup["cutoff"], recipe)
    print(f"{len(pairs)} pairs {pairs.by_source()}", flush=True)
    trained = finetune.train(base_path, pairs, replace(recipe, mix=1.0), progress=False)
    print(f"trained {trained.steps} steps in {trained.seconds:.0f} s", flush=True)
    import torch

    tuned = {k: v.detach().clone() for k, v in trained.model.state_dict().items()}
    base_state = {k: v.detach().clone() for k, v in
                  SentenceTransformer(str(base_path), device="cpu", local_files_only=True).state_dict().items()}
    results = {}
    for mix in [float(m) for m in args.mixes.split(",")]:
        with torch.no_grad():
            for key, value in trained.model.state_dict().items():
                value.copy_(tuned[key])
        finetune.mix_weights(trained.model, base_state, mix)
        res = score_embeddings(setup, encode(trained.model, setup))
        res["ndcg_ci_vs_base"] = paired_ci(res["per_user_ndcg"], base["per_user_ndcg"])
        res.pop("per_user_ndcg")
        res["ndcg_ratio_vs_base"] = res["ndcg@10"] / base["ndcg@10"] if base["ndcg@10"] else None
        results[str(mix)] = res
        print(f"mix {mix}: {json.dumps(res)}", flush=True)

    record = {
        "label": args.label, "dataset": args.dataset,
        "protocol": "time-split validation (train before the 80th percentile of the training events)",
        "validation_cutoff": setup["cutoff"].isoformat(),
        "recipe": {**asdict(recipe), "sources": list(recipe.sources)},
        "pairs": len(pairs), "pairs_by_source": pairs.by_source(),
        "training_seconds": round(trained.seconds, 1), "steps": trained.steps,
        "base": {k: v for k, v in base.items() if k != "per_user_ndcg"},
        "mixes": results,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_average_1m": round(__import__("os").getloadavg()[0], 2),
    }
    import fcntl

    with open(OUT.with_suffix(".lock"), "w") as lock:  # runs may finish together
        fcntl.flock(lock, fcntl.LOCK_EX)
        existing = json.loads(OUT.read_text()) if OUT.exists() else {"machine": machine_info(), "runs": []}
        existing["runs"].append(record)
        OUT.write_text(json.dumps(existing, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    started = time.time()
    code = main()
    print(f"{time.time() - started:.0f} s")
    raise SystemExit(code)
