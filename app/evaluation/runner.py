"""`pgrecs evaluate`: split, build training-only signals in a scratch database, score every
strategy (SQL placements and Python baselines), compute metrics per slice, tune, report."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from app.errors import PgrecsError
from app.evaluation import baselines, metrics, scratch, splits
from app.evaluation.data import Catalog, Interactions, load_catalog, load_interactions

SIGNALS = ("semantic", "cooccurrence", "ease", "popularity")
SINGLE_SIGNAL_STRATEGIES = {
    "popularity": {"popularity": 1.0},
    "cooccurrence": {"cooccurrence": 1.0},
    "ease": {"ease": 1.0},
    "semantic": {"semantic": 1.0},
}
PYTHON_STRATEGIES = ("random", "baseline:popularity", "baseline:item_knn", "baseline:ease", "baseline:als")


@dataclass
class Options:
    protocol: str = "leave-last-out"
    cutoff: float | None = None
    min_history: int = 1
    ks: tuple[int, ...] = (5, 10, 20)
    strategies: tuple[str, ...] | None = None  # None: all
    weights: dict[str, float] | None = None
    tune: bool = False
    tune_placement: str = "home_for_you"
    tune_users: int = 500
    max_users: int | None = None
    seed: int = 0
    dataset: str | None = None
    progress: object = None  # callable(str)
    extra: dict = field(default_factory=dict)


def _log(opts: Options, msg: str) -> None:
    if opts.progress:
        opts.progress(msg)


def make_split(inter: Interactions, opts: Options) -> splits.Split:
    if opts.protocol == "leave-last-out":
        return splits.leave_last_out(inter)
    if opts.protocol == "time-split":
        return splits.time_split(inter, cutoff=opts.cutoff, min_history=opts.min_history)
    raise PgrecsError(f"unknown protocol {opts.protocol!r}; use leave-last-out or time-split")


def score(strategies: dict, users, k: int, opts: Options) -> dict[str, tuple[dict, float]]:
    out = {}
    for name, strat in strategies.items():
        start = time.perf_counter()
        out[name] = (strat.recommend(users, k), time.perf_counter() - start)
        _log(opts, f"scored {name} for {len(users)} users in {out[name][1]:.1f}s")
    return out


def metric_table(recs_by_strategy: dict, split: splits.Split, inter: Interactions, catalog: Catalog,
                 ks, users) -> dict:
    """{strategy: {slice: {metric: value}, 'users': {slice: n}}}"""
    train = split.train(inter)
    pop = metrics.item_popularity(train.user, train.item, catalog.size)
    n_train_users = len(np.unique(train.user))
    test = {u: split.test[u] for u in users}
    cold = split.cold_items(inter)
    slices = {
        "all": set(test),
        "cold_items": {u for u, items in test.items() if items & cold},
        "new_users": split.new_users(inter) & set(test),
    }
    cold_test = {u: test[u] & cold for u in slices["cold_items"]}
    out = {}
    for name, (recs, seconds) in recs_by_strategy.items():
        row = {"seconds": seconds, "slices": {}}
        for slice_name, members in slices.items():
            if not members:
                continue
            truth = cold_test if slice_name == "cold_items" else test
            vals = metrics.ranking_metrics(recs, truth, ks, users=members)
            if slice_name == "all":
                for k in ks:
                    vals.update(metrics.beyond_accuracy(
                        {u: recs[u] for u in members if u in recs}, k, catalog.size, pop, n_train_users,
                        catalog.embeddings, catalog.brands, catalog.categories))
            row["slices"][slice_name] = {"users": len(members), "metrics": vals}
        out[name] = row
    return out


def _python_strategies(names, train: Interactions, n_users: int, catalog: Catalog, val_inter=None,
                       val_split=None, opts: Options | None = None) -> dict:
    data = baselines.TrainingData.from_interactions(train, n_users, catalog.size)
    out = {}
    for name in names:
        if name == "random":
            out[name] = baselines.RandomStrategy(data, seed=opts.seed if opts else 0)
        elif name == "baseline:popularity":
            out[name] = baselines.PopularityStrategy(data)
        elif name == "baseline:item_knn":
            out[name] = baselines.ItemKNNStrategy(data)
        elif name == "baseline:ease":
            lam = 200.0
            if val_split is not None:
                vdata = baselines.TrainingData.from_interactions(
                    val_inter.subset(val_split.train_mask), n_users, catalog.size)
                lam, grid = baselines.tune_ease(vdata, val_split.test)
                if opts:
                    opts.extra["ease_lambda_grid"] = {str(k): v for k, v in grid.items()}
                    _log(opts, f"EASE lambda by validation NDCG@10: {grid} -> {lam:g}")
            out[name] = baselines.EASEStrategy(data, lam)
        elif name == "baseline:als":
            out[name] = baselines.ALSStrategy(data, seed=opts.seed if opts else 0)
    return out


def _wanted(opts: Options, name: str) -> bool:
    if opts.strategies is None:
        return True
    return any(name == s or (s.endswith("*") and name.startswith(s[:-1])) for s in opts.strategies)


def _sample_users(users, n: int | None, seed: int) -> list[int]:
    users = sorted(users)
    if n is None or n >= len(users):
        return users
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(users, size=n, replace=False).tolist())


def _sql_strategies(url: str, tenant: str, catalog, inter, split, opts: Options, placements: list[str],
                    tuned: dict | None) -> dict:
    from app.db import connect

    train_items = split.train_items_by_user(inter)
    out = {}
    with connect(url, tenant=tenant) as conn:
        base = opts.tune_placement if opts.tune_placement in placements else placements[0]
        for name, weights in SINGLE_SIGNAL_STRATEGIES.items():
            if _wanted(opts, name):
                scratch.add_placement(conn, tenant, f"eval_{name}", base, scratch.signal_overrides(weights))
                out[name] = f"eval_{name}"
        for p in placements:
            if _wanted(opts, f"hybrid:{p}"):
                out[f"hybrid:{p}"] = p
        if opts.weights:
            scratch.add_placement(conn, tenant, "eval_weights", base, scratch.signal_overrides(opts.weights))
            out["weights"] = "eval_weights"
        if tuned:
            scratch.add_placement(conn, tenant, "eval_tuned", base, tuned)
            out["tuned"] = "eval_tuned"
    return {name: scratch.SQLStrategy(url, tenant, p, catalog, inter, train_items, name=name)
            for name, p in out.items()}


def _tune(source_url: str, tenant: str, catalog, inter, split, opts: Options, base_row: dict) -> tuple[dict, list]:
    """Coordinate search over signal weights then MMR lambda on the validation split, inside
    the training period only. Returns (placement overrides of the best configuration, trace)."""
    from app.db import connect

    val_inter, val_split = splits.validation_split(inter, split)
    users = _sample_users(val_split.test, opts.tune_users, opts.seed)
    trace = []
    with scratch.scratch_database(source_url, "tune") as url:
        scratch.populate(source_url, url, tenant, val_inter.event_id[val_split.train_mask])
        scratch.refresh(url, tenant)
        train_items = val_split.train_items_by_user(val_inter)

        def run(weights: dict, mmr: float) -> float:
            cfg = {"weights": {k: v for k, v in weights.items() if v > 0}, "mmr_lambda": mmr}
            with connect(url, tenant=tenant) as conn:
                scratch.add_placement(conn, tenant, "eval_candidate", opts.tune_placement, cfg)
            strat = scratch.SQLStrategy(url, tenant, "eval_candidate", catalog, val_inter, train_items)
            recs = strat.recommend(users, 10)
            value = metrics.ranking_metrics(recs, {u: val_split.test[u] for u in users}, ks=(10,))["ndcg@10"]
            trace.append({"weights": cfg["weights"], "mmr_lambda": mmr, "validation_ndcg@10": value})
            _log(opts, f"tune {cfg['weights']} mmr={mmr}: validation NDCG@10 {value:.4f}")
            return value

        weights = {s: float(base_row["weights"].get(s, 0.0)) for s in SIGNALS}
        for s, v in base_row["weights"].items():
            weights.setdefault(s, float(v))
        mmr = float(base_row["mmr_lambda"])
        best = run(weights, mmr)
        for signal in SIGNALS:
            for factor in (0.0, 0.5, 2.0):
                trial = dict(weights)
                trial[signal] = (weights[signal] or 0.2) * factor if factor else 0.0
                if trial == weights or not any(v > 0 for v in trial.values()):
                    continue
                value = run(trial, mmr)
                if value > best:
                    best, weights = value, trial
        for trial_mmr in (1.0, 0.9, 0.7):
            if trial_mmr != mmr:
                value = run(weights, trial_mmr)
                if value > best:
                    best, mmr = value, trial_mmr
    return {"weights": {k: v for k, v in weights.items() if v > 0}, "mmr_lambda": mmr,
            "validation_ndcg@10": best}, trace


def evaluate(source_url: str, tenant: str, opts: Options) -> dict:
    from app.db import connect

    started = time.time()
    with connect(source_url, tenant=tenant) as conn:
        catalog = load_catalog(conn, tenant)
        inter = load_interactions(conn, tenant, catalog)
        placements = [r[0] for r in conn.execute(
            "select placement from pgrecs.placements where tenant_id = %s and placement not like 'eval\\_%%' "
            "order by placement", (tenant,)).fetchall()]
        has_scoring = conn.execute("select to_regprocedure('recs.recommend_for_user(bigint,integer,text,jsonb,boolean)') is not null").fetchone()[0]
    if len(inter) == 0:
        raise PgrecsError("no events loaded: load events first (pgrecs load events FILE)")
    split = make_split(inter, opts)
    users = _sample_users(split.test, opts.max_users, opts.seed)
    n_users = len(inter.user_ids)
    kmax = max(opts.ks)
    _log(opts, f"{opts.protocol}: {split.stats}, evaluating {len(users)} users")

    val_inter = val_split = None
    py_names = [n for n in PYTHON_STRATEGIES if _wanted(opts, n)]
    if "baseline:ease" in py_names:
        val_inter, val_split = splits.validation_split(inter, split)
    strategies = _python_strategies(py_names, split.train(inter), n_users, catalog, val_inter, val_split, opts)
    recs = score(strategies, users, kmax, opts)

    tuned = trace = None
    sql_ran = False
    from app.cli import main as cli_main

    wants_sql = opts.tune or opts.weights or opts.strategies is None or any(
        not n.startswith(("random", "baseline:")) for n in opts.strategies)
    if not wants_sql:
        pass
    elif has_scoring and placements and "refresh" in cli_main.commands:
        if opts.tune:
            with connect(source_url, tenant=tenant) as conn:
                base_row = conn.execute(
                    "select weights, mmr_lambda from pgrecs.placements where tenant_id = %s and placement = %s",
                    (tenant, opts.tune_placement)).fetchone()
            if base_row is None:
                raise PgrecsError(f"unknown placement to tune: {opts.tune_placement}")
            tuned, trace = _tune(source_url, tenant, catalog, inter, split, opts,
                                 {"weights": base_row[0], "mmr_lambda": base_row[1]})
        with scratch.scratch_database(source_url, "eval") as url:
            counts = scratch.populate(source_url, url, tenant, inter.event_id[split.train_mask])
            _log(opts, f"scratch database: {counts}")
            scratch.refresh(url, tenant)
            sql_strats = _sql_strategies(url, tenant, catalog, inter, split, opts, placements,
                                         {k: v for k, v in tuned.items() if k != "validation_ndcg@10"} if tuned else None)
            recs.update(score(sql_strats, users, kmax, opts))
            sql_ran = True
        if tuned:
            with connect(source_url, tenant=tenant) as conn:
                conn.execute(
                    "update pgrecs.placements set weights = %s::jsonb, mmr_lambda = %s, updated_at = now() "
                    "where tenant_id = %s and placement = %s",
                    (json.dumps(tuned["weights"]), tuned["mmr_lambda"], tenant, opts.tune_placement))
            _log(opts, f"wrote the tuned configuration into placement {opts.tune_placement}")
    else:
        _log(opts, "SQL strategies skipped: recs.recommend_for_user or `pgrecs refresh` not available")

    table = metric_table(recs, split, inter, catalog, opts.ks, users)
    report = {
        "dataset": opts.dataset,
        "protocol": opts.protocol,
        "params": {"cutoff": split.cutoff, "min_history": opts.min_history, "ks": list(opts.ks),
                   "max_users": opts.max_users, "seed": opts.seed, "weights": opts.weights},
        "split": split.stats | {"evaluated_users": len(users), "cold_test_items": len(split.cold_items(inter)),
                                "catalog_items": catalog.size},
        "sql_strategies": sql_ran,
        "tuned": tuned,
        "tuning_trace": trace,
        "ease_lambda_grid": opts.extra.get("ease_lambda_grid"),
        "strategies": table,
        "seconds": time.time() - started,
    }
    _store(source_url, tenant, report)
    return report


def _store(url: str, tenant: str, report: dict) -> None:
    from app.db import connect

    with connect(url, tenant=tenant) as conn:
        run_id = conn.execute(
            """
            insert into pgrecs.evaluation_runs (tenant_id, dataset, protocol, params, split_stats, best_config, finished_at)
            values (%s, %s, %s, %s::jsonb, %s::jsonb, %s::jsonb, now())
            returning run_id
            """,
            (tenant, report["dataset"], report["protocol"], json.dumps(report["params"]),
             json.dumps(report["split"]), json.dumps(report["tuned"])),
        ).fetchone()[0]
        rows = []
        for strategy, row in report["strategies"].items():
            for slice_name, s in row["slices"].items():
                for key, value in s["metrics"].items():
                    metric, _, k = key.partition("@")
                    rows.append((tenant, run_id, strategy, slice_name, metric, int(k or 0), value, s["users"]))
        with conn.cursor() as cur:
            cur.executemany(
                "insert into pgrecs.evaluation_results (tenant_id, run_id, strategy, slice, metric, k, value, users) "
                "values (%s, %s, %s, %s, %s, %s, %s, %s)", rows)
    report["run_id"] = run_id
