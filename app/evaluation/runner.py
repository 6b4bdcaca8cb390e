"""`pgrecs evaluate`: split, build training-only signals in a scratch database, score every
strategy (SQL placements and Python baselines), compute metrics per slice, tune, report."""

from __future__ import annotations

import contextlib
import copy
import json
import time
from dataclasses import dataclass, field

import numpy as np

from pgrecs.errors import PgrecsError
from pgrecs.evaluation import baselines, metrics, scratch, splits
from pgrecs.evaluation.data import Catalog, Interactions, load_catalog, load_interactions
from pgrecs.signals import ease_blocks

# strategies that score the placement of `ease` over EASE lists computed another way
EASE_VARIANTS = ("ease:plain", "ease:blocks")
PYTHON_STRATEGIES = ("random", "baseline:popularity", "baseline:item_knn", "baseline:ease", "baseline:als")
EXTERNAL_BASELINES = ("baseline:ease", "baseline:item_knn", "baseline:als")
# the accuracy metric every comparison (and its bootstrap interval) is made on
COMPARISON_METRIC = ("ndcg", 10)
BOOTSTRAP_RESAMPLES = 2000


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
    tune_trials: int = 60
    tune_folds: int = 1  # nested validation folds averaged (more: less noise on small datasets)
    tune_signals: bool = True  # also tune EASE lambda and co-occurrence shrinkage
    max_users: int | None = None
    seed: int = 0
    dataset: str | None = None
    ease_block_size: int = ease_blocks.DEFAULT_BLOCK_SIZE  # strategy ease:blocks
    ease_halo_size: int = ease_blocks.DEFAULT_HALO_SIZE
    progress: object = None  # callable(str)
    extra: dict = field(default_factory=dict)


def single_signals(conn) -> tuple[str, ...]:
    """The signals scored on their own (a strategy each, and the starting points of tuning): every
    neighbour signal of the registry (pgrecs.signals), then popularity, the non-personal reference."""
    return tuple(r[0] for r in conn.execute(
        "select signal from pgrecs.signals where kind = 'neighbors' or signal = 'popularity'"
        " order by kind = 'item', signal").fetchall())


def _log(opts: Options, msg: str) -> None:
    if opts.progress:
        opts.progress(msg)


def make_split(inter: Interactions, opts: Options, n_items: int | None = None) -> splits.Split:
    if opts.protocol == "leave-last-out":
        return splits.leave_last_out(inter, min_history=max(1, opts.min_history))
    if opts.protocol == "time-split":
        return splits.time_split(inter, cutoff=opts.cutoff, min_history=opts.min_history, n_items=n_items)
    raise PgrecsError(f"unknown protocol {opts.protocol!r}; use leave-last-out or time-split")


def score(strategies: dict, users, k: int, opts: Options) -> dict[str, tuple[dict, float]]:
    out = {}
    for name, strat in strategies.items():
        start = time.perf_counter()
        out[name] = (strat.recommend(users, k), time.perf_counter() - start)
        _log(opts, f"scored {name} for {len(users)} users in {out[name][1]:.1f}s")
    return out


def _business_values(catalog: Catalog) -> dict[str, np.ndarray]:
    """Item values for revenue-weighted hits: price, and margin where the catalogue has any."""
    out = {}
    for name, values in (("revenue", catalog.prices), ("margin", catalog.margins)):
        if values is not None and np.isfinite(values).any():
            out[name] = values
    return out


def metric_table(recs_by_strategy: dict, split: splits.Split, inter: Interactions, catalog: Catalog,
                 ks, users) -> dict:
    """{strategy: {'seconds': s, 'slices': {slice: {'users': n, 'targets': n, 'metrics': {...}}}}}.
    Slices: all (targets the user never had), repeat_items (held-out items already in the user's
    history: unreachable while lists leave the history out, so their count is the point),
    cold_items (targets with no training event; only where the catalogue is not limited to known
    items) and new_users (at most NEW_USER_MAX_HISTORY training items)."""
    train = split.train(inter)
    pop = metrics.item_popularity(train.user, train.item, catalog.size)
    n_train_users = len(np.unique(train.user))
    test = {u: split.test[u] for u in users}
    cold = split.cold_items(inter) if split.candidates is None else set()
    repeat = {u: split.repeat[u] for u in users if u in split.repeat}
    slices = {
        "all": set(test),
        "repeat_items": set(repeat),
        "cold_items": {u for u, items in test.items() if items & cold},
        "new_users": split.new_users(inter) & set(test),
    }
    truths = {"all": test, "repeat_items": repeat, "new_users": test,
              "cold_items": {u: test[u] & cold for u in slices["cold_items"]}}
    values = _business_values(catalog)
    out = {}
    for name, (recs, seconds) in recs_by_strategy.items():
        row = {"seconds": seconds, "slices": {}}
        for slice_name, members in slices.items():
            if not members:
                continue
            truth = truths[slice_name]
            vals = metrics.ranking_metrics(recs, truth, ks, users=members)
            if slice_name in ("all", "repeat_items"):
                for value_name, item_values in values.items():
                    for k in ks:
                        r = metrics.revenue_at_k(recs, truth, item_values, k, users=members)
                        vals[f"{value_name}@{k}"] = r["value"]
                        vals[f"{value_name}_share@{k}"] = r["share"]
            if slice_name == "all":
                for k in ks:
                    vals.update(metrics.beyond_accuracy(
                        {u: recs[u] for u in members if u in recs}, k, catalog.size, pop, n_train_users,
                        catalog.embeddings, catalog.brands, catalog.categories))
            row["slices"][slice_name] = {"users": len(members),
                                         "targets": int(sum(len(truth[u]) for u in members)), "metrics": vals}
        out[name] = row
    return out


def comparisons(recs_by_strategy: dict, split: splits.Split, users, seed: int = 0,
                signals: tuple[str, ...] = ()) -> dict:
    """Paired bootstrap intervals over the test users (NDCG@10) of the differences that matter:
    the tuned configuration (or, without one, the configured hybrids) against the best single
    signal and against the best external baseline of the same run (each "best" by its mean on
    these users). The interval is over users, not over the choice of the best. signals: the
    single-signal strategies (single_signals)."""
    metric, k = COMPARISON_METRIC
    users = sorted(u for u in users if u in split.test)
    per = {name: metrics.per_user(recs, split.test, users, metric, k) for name, (recs, _) in recs_by_strategy.items()}
    singles = [n for n in signals if n in per]
    externals = [n for n in EXTERNAL_BASELINES if n in per]
    subjects = ["tuned"] if "tuned" in per else [n for n in per if n.startswith("hybrid:")]
    out = {}
    for subject in subjects:
        for label, pool in (("best_single_signal", singles), ("best_external_baseline", externals)):
            if not pool:
                continue
            best = max(pool, key=lambda n: (per[n].mean(), -pool.index(n)))
            cmp = metrics.paired_bootstrap(per[subject], per[best], BOOTSTRAP_RESAMPLES, seed)
            out[f"{subject} vs {label}"] = {"subject": subject, "reference": best, "metric": f"{metric}@{k}", **cmp}
    return out


def _python_strategies(names, train: Interactions, n_users: int, catalog: Catalog, val_inter=None,
                       val_split=None, opts: Options | None = None, candidates: np.ndarray | None = None) -> dict:
    tie_rank = catalog.tie_order
    data = baselines.TrainingData.from_interactions(train, n_users, catalog.size, tie_rank, candidates)
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
                    val_inter.subset(val_split.train_mask), n_users, catalog.size, tie_rank, val_split.candidates)
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
    # user codes follow external ids (data.interactions_from_rows): the sample is the same
    # whichever order the events were loaded in
    users = sorted(users)
    if n is None or n >= len(users):
        return users
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(users, size=n, replace=False).tolist())


def _sql_strategies(url: str, tenant: str, catalog, inter, split, opts: Options, placements: list[str],
                    tuned: dict | None, signals: tuple[str, ...]) -> dict:
    from pgrecs.db import connect

    train_items = split.train_items_by_user(inter)
    out = {}
    with connect(url, tenant=tenant) as conn:
        base = opts.tune_placement if opts.tune_placement in placements else placements[0]
        for name in signals:
            if _wanted(opts, name) or (name == "ease" and any(_wanted(opts, v) for v in EASE_VARIANTS)):
                scratch.add_placement(conn, tenant, f"eval_{name}", base, scratch.signal_overrides({name: 1.0}))
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


TUNE_FACTORS = (0.0, 0.25, 0.5, 2.0, 4.0)
TUNE_MMR = (1.0, 0.9, 0.8)
TUNE_MIN_GAIN = 0.01
# a step must also beat the current configuration by this many standard errors of the paired
# per-user NDCG@10 difference (a one-sided test at about 2.3%): on a few hundred validation users
# a 1% gain is one or two users' hits
TUNE_MIN_Z = 2.0
TUNE_HISTORY_LIMITS = (20, 50, 100)
TUNE_HALF_LIVES = ("14 days", "90 days", "3650 days")
# signal parameters (`pgrecs refresh --ease-lambda`, dbt var cooc_shrinkage): the first is the default
TUNE_EASE_LAMBDAS = (300.0, 100.0, 1000.0, 3000.0)
TUNE_EASE_SEMANTIC_WEIGHTS = (10.0, 0.0, 3.0, 30.0)
TUNE_COOC_SHRINKAGE = (10.0, 0.0, 50.0)


def gains_enough(candidate: float, current: float) -> bool:
    """Whether a validation score beats the current one by TUNE_MIN_GAIN (relative)."""
    return candidate > current * (1 + TUNE_MIN_GAIN) + 1e-6


def clearly_better(candidate: np.ndarray, current: np.ndarray) -> bool:
    """Whether per-user validation scores (paired, same users) of a candidate configuration beat
    the current one by TUNE_MIN_GAIN (relative) and by TUNE_MIN_Z standard errors of the paired
    per-user difference: smaller moves are validation noise."""
    diff = candidate - current
    se = float(diff.std(ddof=1)) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
    return bool(gains_enough(candidate.mean(), current.mean()) and diff.mean() > TUNE_MIN_Z * se)


def _config_key(cfg: dict) -> str:
    return json.dumps(cfg, sort_keys=True)


def _tune(source_url: str, tenant: str, catalog, inter, split, opts: Options, base_row: dict,
          signals: tuple[str, ...]) -> tuple[dict, list]:
    """Search the placement configuration on validation splits inside the training period only
    (`tune_folds` nested folds, NDCG@10 averaged over their users).

    0. Signal parameters, each on its own signal alone (the default kept unless another value
       gains TUNE_MIN_GAIN): EASE lambda, the weight of the text embeddings as EASE side
       information, and co-occurrence shrinkage (the neighbour lists of the validation
       databases recomputed as `pgrecs refresh` would).
    1. The best single signal on validation is the starting point; the placement as configured
       (its caps, filters and pools) and the same weights as a pure ranking configuration (pools
       as the single-signal strategies, no caps or default filters) replace it only as a step
       would, so the tuned hybrid is never worse on validation than its best single signal.
    2. One round of coordinate ascent over every signal weight (x0, x0.25, x0.5, x2, x4; a
       switched-off signal is tried at 0.1, 0.3 and 1); a step must gain TUNE_MIN_GAIN and
       TUNE_MIN_Z standard errors of the paired per-user difference (more signals only when
       they clearly help).
    3. History: anchors kept (history_limit) and their recency half-life; fusion (weighted sum of
       max-normalised signals vs reciprocal rank fusion).
    4. Up to two more weight rounds, then the MMR lambda.
    Returns (placement overrides of the best configuration plus `signal_params`, trace of every trial)."""
    from pgrecs.db import connect

    # validation folds, each nested inside the previous one's training part: fold 1 holds out
    # the last training interaction, fold 2 the one before it, ... (the test period is never read)
    folds = []
    f_inter, f_split = inter, split
    for _ in range(max(1, opts.tune_folds)):
        try:
            f_inter, f_split = splits.validation_split(f_inter, f_split)
        except PgrecsError:
            break
        f_users = _sample_users(f_split.test, opts.tune_users, opts.seed)
        folds.append({"inter": f_inter, "split": f_split, "users": f_users,
                      "truth": {u: f_split.test[u] for u in f_users},
                      "train_items": f_split.train_items_by_user(f_inter)})
    trace: list[dict] = []
    seen: dict[str, np.ndarray] = {}
    params = {"ease_lambda": TUNE_EASE_LAMBDAS[0], "ease_semantic_weight": TUNE_EASE_SEMANTIC_WEIGHTS[0],
              "cooc_shrinkage": TUNE_COOC_SHRINKAGE[0]}
    with contextlib.ExitStack() as stack:
        for fold in folds:
            fold["url"] = stack.enter_context(scratch.scratch_database(source_url, "tune"))
            scratch.populate(source_url, fold["url"], tenant, fold["inter"].event_id[fold["split"].train_mask],
                             _known_item_ids(catalog, fold["split"]))
            scratch.refresh(fold["url"], tenant)
        _log(opts, f"tuning on {len(folds)} validation fold(s) of {[len(f['users']) for f in folds]} users")

        def per_user(cfg: dict) -> np.ndarray | None:
            """NDCG@10 of each validation user (all folds, fixed order); None past the trial budget."""
            cfg = dict(cfg, weights={k: v for k, v in cfg["weights"].items() if v > 0})
            relevant = {"ease_lambda": "ease", "ease_semantic_weight": "ease", "cooc_shrinkage": "cooccurrence"}
            key = _config_key({**cfg, "signal_params": {p: v for p, v in params.items() if relevant[p] in cfg["weights"]}})
            if key in seen:
                return seen[key]
            if not cfg["weights"] or len(seen) >= opts.tune_trials:
                return None
            values = []
            for fold in folds:
                with connect(fold["url"], tenant=tenant) as conn:
                    scratch.add_placement(conn, tenant, "eval_candidate", opts.tune_placement, cfg)
                strat = scratch.SQLStrategy(fold["url"], tenant, "eval_candidate", catalog, fold["inter"],
                                            fold["train_items"])
                recs = strat.recommend(fold["users"], 10)
                values += [metrics.user_ranking_metrics(recs.get(u, np.empty(0, dtype=np.int64)), fold["truth"][u], 10)
                           ["ndcg"] for u in fold["users"]]
            seen[key] = vec = np.asarray(values)
            trace.append({**cfg, "signal_params": dict(params), "validation_ndcg@10": float(vec.mean())})
            _log(opts, f"tune {_describe(cfg)} {params}: validation NDCG@10 {vec.mean():.4f}")
            return vec

        def run(cfg: dict) -> float:
            vec = per_user(cfg)
            return -1.0 if vec is None else float(vec.mean())

        def replace(signal: str, build) -> None:
            # build(url) reads the current `params`
            for fold in folds:
                scratch.replace_neighbors(fold["url"], tenant, signal, build(fold["url"]))

        def tune_signal(signal: str, param: str, grid, build) -> None:
            alone = {**scratch.signal_overrides({signal: 1.0}), "mmr_lambda": 1.0, "fusion": "weighted"}
            results = {params[param]: run(alone)}
            for value in grid:
                if value not in results:
                    params[param] = value
                    replace(signal, build)
                    results[value] = run(alone)
            # the default (grid[0]) stays unless another value gains TUNE_MIN_GAIN, as for every step
            best_value = max(grid, key=lambda v: (results[v], -grid.index(v)))
            chosen = best_value if gains_enough(results[best_value], results[grid[0]]) else grid[0]
            if chosen != params[param]:
                params[param] = chosen
                replace(signal, build)
            _log(opts, f"tune {param}: {results} -> {chosen:g}")

        if opts.tune_signals:
            def ease(url):
                return scratch.ease_neighbors(url, tenant, params["ease_lambda"], params["ease_semantic_weight"])

            tune_signal("ease", "ease_lambda", TUNE_EASE_LAMBDAS, ease)
            tune_signal("ease", "ease_semantic_weight", TUNE_EASE_SEMANTIC_WEIGHTS, ease)
            tune_signal("cooccurrence", "cooc_shrinkage", TUNE_COOC_SHRINKAGE,
                        lambda url: scratch.cooccurrence_neighbors(url, tenant, params["cooc_shrinkage"]))
        weights = {s: float(base_row["weights"].get(s, 0.0)) for s in signals}
        for s, v in base_row["weights"].items():
            weights.setdefault(s, float(v))
        as_configured = {"weights": weights, "mmr_lambda": float(base_row["mmr_lambda"]),
                         "fusion": base_row.get("fusion") or "weighted"}
        clean = {**scratch.signal_overrides(weights, _pools(weights)), "mmr_lambda": 1.0, "fusion": "weighted"}
        singles = [{**scratch.signal_overrides({s: 1.0}), "mmr_lambda": 1.0, "fusion": "weighted"} for s in signals]
        scored = [(run(c), i, c) for i, c in enumerate(singles)]
        _, _, cfg = max(scored, key=lambda t: (t[0], -t[1]))
        best_vec = per_user(cfg)
        if best_vec is None:
            raise PgrecsError(f"--tune-trials {opts.tune_trials} is spent before every single signal was scored; raise it")
        cfg = dict(cfg, weights={**{s: 0.0 for s in weights}, **cfg["weights"]})

        def better(vec: np.ndarray | None) -> bool:
            return vec is not None and clearly_better(vec, best_vec)

        for start in (as_configured, clean):
            vec = per_user(start)
            if better(vec):
                best_vec, cfg = vec, dict(start, weights={**{s: 0.0 for s in weights}, **start["weights"]})

        def weight_round() -> bool:
            nonlocal best_vec, cfg
            improved = False
            for signal in list(cfg["weights"]):
                current = cfg["weights"][signal]
                trials = [current * f for f in TUNE_FACTORS] if current > 0 else [0.1, 0.3, 1.0]
                for w in trials:
                    trial = dict(cfg, weights=dict(cfg["weights"], **{signal: w}))
                    trial["pool_sizes"] = _pools(trial["weights"], cfg.get("pool_sizes"))
                    vec = per_user(trial)
                    if better(vec):
                        best_vec, cfg, improved = vec, trial, True
            return improved

        def try_values(column: str, values) -> None:
            nonlocal best_vec, cfg
            for v in values:
                vec = per_user(dict(cfg, **{column: v}))
                if better(vec):
                    best_vec, cfg = vec, dict(cfg, **{column: v})

        weight_round()
        # how much of the user's history anchors the list, how fast it fades, and the fusion,
        # before further weight rounds so the trial budget always reaches them
        try_values("history_limit", TUNE_HISTORY_LIMITS)
        try_values("history_half_life", TUNE_HALF_LIVES)
        try_values("fusion", ("weighted", "rrf"))
        for _round in range(2):
            if not weight_round():
                break
        try_values("mmr_lambda", TUNE_MMR)
    out = dict(cfg, weights={k: v for k, v in cfg["weights"].items() if v > 0})
    out["validation_ndcg@10"] = float(best_vec.mean())
    out["signal_params"] = dict(params)
    out["validation_users"] = [len(f["users"]) for f in folds]
    return out, trace


def _known_item_ids(catalog: Catalog, split: splits.Split) -> np.ndarray | None:
    """Database ids of the items a split's rankings may return (None: every catalogue item)."""
    return None if split.candidates is None else catalog.item_ids[split.candidates]


def _placement_overrides(tuned: dict) -> dict:
    return {k: v for k, v in tuned.items() if k not in ("validation_ndcg@10", "signal_params", "validation_users")}


def write_tuned(conn, tenant: str, placement: str, tuned: dict) -> None:
    """Write a tuned configuration (the `tuned` of an evaluation report) into `placement`."""
    scratch.add_placement(conn, tenant, "eval_tuned_tmp", placement, _placement_overrides(tuned))
    conn.execute(
        "update pgrecs.placements p set weights = t.weights, pool_sizes = t.pool_sizes, "
        "default_filters = t.default_filters, fusion = t.fusion, history_limit = t.history_limit, "
        "history_half_life = t.history_half_life, mmr_lambda = t.mmr_lambda, "
        "max_per_brand = t.max_per_brand, max_per_category = t.max_per_category, updated_at = now() "
        "from pgrecs.placements t where t.tenant_id = p.tenant_id and t.placement = 'eval_tuned_tmp' "
        "and p.tenant_id = %s and p.placement = %s", (tenant, placement))
    conn.execute("delete from pgrecs.placements where tenant_id = %s and placement = 'eval_tuned_tmp'", (tenant,))


def _pools(weights: dict, existing: dict | None = None) -> dict:
    pools = dict(existing or {})
    for s, w in weights.items():
        if w > 0:
            pools.setdefault(s, scratch.SINGLE_SIGNAL_POOLS.get(s, 50))
    return pools


def _describe(cfg: dict) -> str:
    w = ",".join(f"{k}={v:g}" for k, v in sorted(cfg["weights"].items()))
    extra = "" if "max_per_brand" in cfg else " as-configured"
    return f"{{{w}}} {cfg.get('fusion', 'weighted')} mmr={cfg.get('mmr_lambda')}{extra}"


def evaluate(source_url: str, tenant: str, opts: Options) -> dict:
    from pgrecs.db import connect

    started = time.time()
    with connect(source_url, tenant=tenant) as conn:
        catalog = load_catalog(conn, tenant)
        inter = load_interactions(conn, tenant, catalog)
        placements = [r[0] for r in conn.execute(
            "select placement from pgrecs.placements where tenant_id = %s and placement not like 'eval\\_%%' "
            "order by placement", (tenant,)).fetchall()]
        signals = single_signals(conn)
        has_scoring = conn.execute("select to_regprocedure('recs.recommend_for_user(bigint,integer,text,jsonb,boolean)') is not null").fetchone()[0]
    if len(inter) == 0:
        raise PgrecsError("no events loaded: load events first (pgrecs load events FILE)")
    split = make_split(inter, opts, catalog.size)
    users = _sample_users(split.test, opts.max_users, opts.seed)
    n_users = len(inter.user_ids)
    kmax = max(opts.ks)
    _log(opts, f"{opts.protocol}: {split.stats}, evaluating {len(users)} users")

    val_inter = val_split = None
    py_names = [n for n in PYTHON_STRATEGIES if _wanted(opts, n)]
    if "baseline:ease" in py_names:
        val_inter, val_split = splits.validation_split(inter, split)
    strategies = _python_strategies(py_names, split.train(inter), n_users, catalog, val_inter, val_split, opts,
                                    split.candidates)
    recs = score(strategies, users, kmax, opts)

    tuned = trace = None
    sql_ran = False
    from pgrecs.cli import main as cli_main

    wants_sql = opts.tune or opts.weights or opts.strategies is None or any(
        not n.startswith(("random", "baseline:")) for n in opts.strategies)
    if not wants_sql:
        pass
    elif has_scoring and placements and "refresh" in cli_main.commands:
        if opts.tune:
            with connect(source_url, tenant=tenant) as conn:
                base_row = conn.execute(
                    "select weights, mmr_lambda, fusion from pgrecs.placements where tenant_id = %s and placement = %s",
                    (tenant, opts.tune_placement)).fetchone()
            if base_row is None:
                raise PgrecsError(f"unknown placement to tune: {opts.tune_placement}")
            tuned, trace = _tune(source_url, tenant, catalog, inter, split, opts,
                                 {"weights": base_row[0], "mmr_lambda": base_row[1], "fusion": base_row[2]}, signals)
        with scratch.scratch_database(source_url, "eval") as url:
            counts = scratch.populate(source_url, url, tenant, inter.event_id[split.train_mask],
                                      _known_item_ids(catalog, split))
            _log(opts, f"scratch database: {counts}")
            signal_params = (tuned or {}).get("signal_params")
            scratch.refresh(url, tenant, signal_params)
            sql_strats = _sql_strategies(url, tenant, catalog, inter, split, opts, placements,
                                         _placement_overrides(tuned) if tuned else None, signals)
            recs.update(score({n: s for n, s in sql_strats.items() if n != "ease" or _wanted(opts, n)}, users, kmax, opts))
            if "cooccurrence" in sql_strats and _wanted(opts, "cooccurrence:raw_counts"):
                # the same placement over un-normalised co-occurrence (basket counts), for the
                # normalisation comparison; last, as it replaces the lists in the scratch database
                scratch.replace_neighbors(url, tenant, "cooccurrence", scratch.raw_count_neighbors(url, tenant))
                raw = sql_strats["cooccurrence"]
                raw.name = "cooccurrence:raw_counts"
                recs.update(score({"cooccurrence:raw_counts": raw}, users, kmax, opts))
            if "ease" in sql_strats:
                # the same placement over EASE computed another way, replacing the EASE lists in
                # turn: without the text side information (the purely collaborative model, to show
                # what the embeddings add), and by blocks (the solver above the dense limit)
                params = signal_params or {}
                lam = params.get("ease_lambda", TUNE_EASE_LAMBDAS[0])
                side = params.get("ease_semantic_weight", TUNE_EASE_SEMANTIC_WEIGHTS[0])
                variants = {"ease:plain": ("without side information", {"semantic_weight": 0.0}),
                            "ease:blocks": ("by blocks", {"semantic_weight": side, "method": "blocks",
                                                          "block_size": opts.ease_block_size,
                                                          "halo_size": opts.ease_halo_size})}
                for name in EASE_VARIANTS:
                    if _wanted(opts, name):
                        label, solver = variants[name][0], dict(variants[name][1])
                        built = scratch.replace_neighbors(url, tenant, "ease", scratch.ease_neighbors(
                            url, tenant, lam, solver.pop("semantic_weight"), **solver))
                        _log(opts, f"EASE lists {label}: {built} rows")
                        other = copy.copy(sql_strats["ease"])
                        other.name = name
                        recs.update(score({name: other}, users, kmax, opts))
            if "semantic" in sql_strats:
                # the semantic signal from each other registered model (e.g. the fast static tier
                # against MiniLM); last, as it replaces the semantic lists in the scratch database
                for model in scratch.other_embedding_models(url, tenant):
                    name = f"semantic:{model}"
                    if _wanted(opts, name):
                        built = scratch.use_semantic_model(url, tenant, model)
                        _log(opts, f"semantic lists from model {model}: {built} items")
                        other = copy.copy(sql_strats["semantic"])
                        other.name = name
                        recs.update(score({name: other}, users, kmax, opts))
            sql_ran = True
        if tuned:
            with connect(source_url, tenant=tenant) as conn:
                write_tuned(conn, tenant, opts.tune_placement, tuned)
            _log(opts, f"wrote the tuned configuration into placement {opts.tune_placement}")
    else:
        _log(opts, "SQL strategies skipped: recs.recommend_for_user or `pgrecs refresh` not available")

    table = metric_table(recs, split, inter, catalog, opts.ks, users)
    compared = comparisons(recs, split, users, opts.seed, signals)
    report = {
        "dataset": opts.dataset,
        "protocol": opts.protocol,
        "params": {"cutoff": split.cutoff, "min_history": opts.min_history, "ks": list(opts.ks),
                   "max_users": opts.max_users, "seed": opts.seed, "weights": opts.weights,
                   "tune": opts.tune, "tune_users": opts.tune_users if opts.tune else None,
                   "tune_trials": opts.tune_trials if opts.tune else None,
                   "tune_folds": opts.tune_folds if opts.tune else None,
                   "tune_signals": opts.tune_signals if opts.tune else None,
                   "bootstrap_resamples": BOOTSTRAP_RESAMPLES},
        "split": split.stats | {"evaluated_users": len(users), "cold_test_items": len(split.cold_items(inter)),
                                "catalog_items": catalog.size},
        "sql_strategies": sql_ran,
        "tuned": tuned,
        "tuning_trace": trace,
        "ease_lambda_grid": opts.extra.get("ease_lambda_grid"),
        "strategies": table,
        "comparisons": compared,
        "seconds": time.time() - started,
    }
    _store(source_url, tenant, report)
    return report


def _store(url: str, tenant: str, report: dict) -> None:
    from pgrecs.db import connect

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
