"""`pgrecs refresh`: dbt build (models and tests), co-occurrence and EASE in Python, one publishing transaction.

Full refresh: every model, every co-occurrence list, EASE, popularity, audit, every test.
Incremental (the default once a full refresh has run) does work in proportion to what changed:

- the event-level models read only the events after their high-water mark and merge them into
  the stored (user, item) and (session, item) rows they belong to; only the baskets of those
  users and sessions are rebuilt, only the days and months holding new events are re-rolled;
  popularity is summed from the monthly rollup, the trending windows from the last days;
- only the co-occurrence lists touched by the new events are recomputed and replaced; the
  Python product starts reading the baskets while dbt is still testing them;
- the item-text and audit models are skipped when no item row (and no text function) changed
  since the last refresh (fingerprint `items` in pgrecs.refresh_state.inputs);
- the dbt tests on the event-level relations read only the rows this run could change (var
  incremental_refresh, macro get_where_subquery); every other model keeps all its tests;
- EASE, a global model, is kept unless asked for (--ease); asked for, it is skipped when the
  user x item matrix and the embeddings it reads as side information are the ones it was
  computed from (fingerprint `ease`);
- the next-item lists (dbt mart fct_item_sequence, every step of every user: about 10 s at
  1,000,000 events) are kept unless asked for (--sequence).

A change of any dbt var, of --top-n, of the event types' weights or of the dbt project's SQL
(fingerprint `settings`) turns an incremental refresh into a full one, since the stored
incremental rows depend on them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

import hashlib

from pgrecs import dbt
from pgrecs.db import connect
from pgrecs.errors import PgrecsError
from pgrecs.signals import cooccurrence as cooccurrence_module
from pgrecs.signals import ease as ease_module


@dataclass
class RefreshReport:
    mode: str
    dbt_seconds: float = 0.0  # the dbt invocation, wall clock: dbt build (models and tests) or dbt run
    test_seconds: float = 0.0  # of which the tests' execution (summed over dbt's threads; not added to seconds)
    cooccurrence_seconds: float = 0.0  # what the refresh waited for co-occurrence after dbt (the critical path)
    cooccurrence_compute_seconds: float = 0.0  # its whole computation, mostly while dbt's last nodes ran
    ease_seconds: float = 0.0
    sequence: bool = False  # whether this run rebuilt and published the next-item lists
    publish_seconds: float = 0.0
    models: int = 0
    tests: int = 0
    tenants: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    nodes: list[dbt.NodeResult] = field(default_factory=list)

    def slowest(self, n: int = 5) -> list[dbt.NodeResult]:
        """The n slowest dbt models and tests of this refresh."""
        return sorted(self.nodes, key=lambda node: -node.seconds)[:n]

    @property
    def seconds(self) -> float:
        return self.dbt_seconds + self.cooccurrence_seconds + self.ease_seconds + self.publish_seconds


ITEM_MODELS = ("stg_pgrecs__items", "int_item_titles_keyed", "int_item_titles_matched", "dim_items_enriched",
               "fct_item_audit", "fct_catalog_audit_summary")
ITEM_RELATIONS = ("recs_staging.stg_pgrecs__items", "recs_intermediate.int_item_titles_keyed",
                  "recs_intermediate.int_item_titles_matched", "recs_marts.dim_items_enriched",
                  "recs_marts.fct_item_audit", "recs_marts.fct_catalog_audit_summary")


@dataclass
class Snapshot:
    last_event_ids: dict[str, int]  # max event id per tenant before the build
    marks: dict[str, int]  # the last published event id per tenant (refresh_state)
    inputs: dict | None  # the fingerprints every tenant's last refresh recorded (None: unknown or mixed)
    item_relations_exist: bool

    @property
    def has_state(self) -> bool:
        return bool(self.last_event_ids) and set(self.last_event_ids) <= set(self.marks)


def _snapshot(url: str) -> Snapshot:
    with connect(url) as conn:
        ids = dict(conn.execute(
            "select tenant_id, max(event_id) from pgrecs.events group by tenant_id").fetchall())
        state = conn.execute("select tenant_id, last_event_id, inputs from pgrecs.refresh_state").fetchall()
        exist = conn.execute("select bool_and(to_regclass(r) is not null) from unnest(%s::text[]) as r",
                             (list(ITEM_RELATIONS),)).fetchone()[0]
    marks = {tenant: mark for tenant, mark, _ in state}
    stored = {json.dumps(inputs.get("shared"), sort_keys=True) for tenant, _, inputs in state if tenant in ids}
    inputs = None
    if len(stored) == 1 and set(ids) <= set(marks):
        inputs = {"shared": json.loads(stored.pop()),
                  "ease": {tenant: (inp or {}).get("ease") for tenant, _, inp in state}}
    return Snapshot(ids, marks, inputs, bool(exist))


def _settings_fingerprint(url: str, dbt_vars: dict) -> str:
    """What the stored incremental rows depend on: every dbt var (defaults merged with this run's
    overrides), the event types' weights, and the dbt project's SQL and YAML."""
    import yaml

    with open(dbt.PROJECT_DIR / "dbt_project.yml", encoding="utf-8") as f:
        effective = dict((yaml.safe_load(f).get("vars") or {}))
    effective.update({k: v for k, v in dbt_vars.items() if k not in ("full_refresh", "incremental_refresh")})
    digest = hashlib.sha256(json.dumps(effective, sort_keys=True, default=str).encode())
    for path in sorted(dbt.PROJECT_DIR.glob("**/*")):
        if path.suffix in (".sql", ".yml") and "target" not in path.parts and "logs" not in path.parts:
            digest.update(path.relative_to(dbt.PROJECT_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    with connect(url) as conn:
        rows = conn.execute("select event_type, default_weight::text from pgrecs.event_types order by 1").fetchall()
    digest.update(json.dumps(rows).encode())
    return digest.hexdigest()


def _items_fingerprint(url: str) -> str:
    """The catalog rows (every column, every tenant) and the pgrecs text functions the item models call."""
    with connect(url) as conn:
        count, total = conn.execute(
            "select count(*), coalesce(sum(hashtextextended(i::text, 0)), 0)::text from pgrecs.items as i").fetchone()
        (functions,) = conn.execute(
            "select md5(coalesce(string_agg(p.oid::regprocedure::text || p.prosrc, ',' order by p.oid::regprocedure::text), ''))"
            " from pg_catalog.pg_proc as p where p.pronamespace = 'pgrecs'::regnamespace").fetchone()
    return f"{count}:{total}:{functions}"


# the default model's embeddings of the tenant's active items: EASE's side information
_EASE_EMBEDDINGS_FROM = """
    from pgrecs.item_embeddings as e
    join pgrecs.items as i on i.item_id = e.item_id and i.active
    where e.model_id = (select m.model_id from pgrecs.embedding_models as m where m.is_default)"""


def _ease_fingerprints(url: str, lam: float, top_n: int, semantic_weight: float) -> dict[str, str]:
    """Per tenant, the binary user x item matrix EASE reads and, when side information is on, the
    embeddings it reads, with its parameters."""
    with connect(url) as conn:
        rows = conn.execute(
            "select tenant_id, count(*), sum(hashtextextended(user_id::text || ',' || item_id::text, 0))::text"
            " from recs_intermediate.int_user_items_aggregated group by tenant_id").fetchall()
        embedded = dict(conn.execute(
            "select e.tenant_id, count(*) || ':' || sum(hashtextextended(e.item_id::text || encode(e.text_sha256, 'hex'), 0))"
            + _EASE_EMBEDDINGS_FROM + " group by e.tenant_id").fetchall()) if semantic_weight > 0 else {}
    return {tenant: f"{count}:{total}:{lam}:{top_n}:{semantic_weight}:{embedded.get(tenant, '')}"
            for tenant, count, total in rows}


def _ease_side_information(conn, tenant: str) -> tuple[np.ndarray, np.ndarray]:
    """(item ids, embeddings) of the default model for the tenant's active items."""
    rows = conn.execute("select e.item_id, e.embedding::vector::real[]" + _EASE_EMBEDDINGS_FROM
                        + " and e.tenant_id = %s order by e.item_id", (tenant,)).fetchall()
    if not rows:
        return np.array([], dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return (np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.float32))


def compute_ease(url: str, lam: float, top_n: int, max_items: int,
                 notes: list[str], tenants: list[str] | None = None,
                 semantic_weight: float = ease_module.DEFAULT_SEMANTIC_WEIGHT) -> dict[str, ease_module.EaseNeighbors]:
    """EASE neighbours per tenant (all, or the given ones) from recs_intermediate.int_user_items_aggregated,
    with the default model's embeddings as side information when semantic_weight > 0."""
    out: dict[str, ease_module.EaseNeighbors] = {}
    with connect(url) as conn:
        # the model's size per tenant with interactions: items with interactions, plus the
        # embedded ones when side information is on
        counts = conn.execute(
            "with interacted as (select distinct tenant_id, item_id from recs_intermediate.int_user_items_aggregated),"
            " embedded as (select e.tenant_id, e.item_id" + _EASE_EMBEDDINGS_FROM + " and %s)"
            " select tenant_id, count(*) from (select * from interacted union select * from embedded"
            " where tenant_id in (select tenant_id from interacted)) as u group by tenant_id order by tenant_id",
            (semantic_weight > 0,)).fetchall()
        for tenant, n_items in counts:
            if tenants is not None and tenant not in tenants:
                continue
            if n_items > max_items:
                notes.append(
                    f"EASE skipped for tenant {tenant}: {n_items:,} items with interactions or embeddings exceed the "
                    f"limit of {max_items:,} (raise --ease-max-items if memory allows; scoring uses co-occurrence)")
                continue
            embedded_ids, embeddings = (_ease_side_information(conn, tenant) if semantic_weight > 0
                                        else (None, None))
            rows = conn.execute(
                "select user_id, item_id from recs_intermediate.int_user_items_aggregated where tenant_id = %s",
                (tenant,)).fetchall()
            pairs = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
            out[tenant] = ease_module.ease_from_pairs(pairs[:, 0], pairs[:, 1], lam=lam, top_n=top_n,
                                                      embedded_item_ids=embedded_ids, embeddings=embeddings,
                                                      semantic_weight=semantic_weight)
    return out


def _project_var(name: str, variables: dict):
    """A dbt var: the override passed to this refresh, else dbt_project.yml's default."""
    import yaml

    if name in variables:
        return variables[name]
    with open(dbt.PROJECT_DIR / "dbt_project.yml", encoding="utf-8") as f:
        return (yaml.safe_load(f).get("vars") or {}).get(name)


_NEIGHBOR_COLUMNS = "(tenant_id, item_id, neighbor_item_id, score, rank)"


def _copy_neighbors(conn, table: str, per_tenant: dict) -> None:
    """Rows of per-tenant neighbour lists into a temporary table, through one binary COPY built
    with numpy (a Python call per row cost about a second per 200,000 rows)."""
    conn.execute(f"create temporary table {table} (tenant_id text, item_id bigint, neighbor_item_id bigint,"
                 " score real, rank smallint) on commit drop")
    parts = [b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")]
    for tenant, nb in per_tenant.items():
        name = tenant.encode()
        dtype = np.dtype([("count", ">i2"), ("l0", ">i4"), ("tenant", f"S{len(name)}"), ("l1", ">i4"), ("item", ">i8"),
                          ("l2", ">i4"), ("neighbor", ">i8"), ("l3", ">i4"), ("score", ">f4"), ("l4", ">i4"),
                          ("rank", ">i2")])
        rows = np.zeros(len(nb.item_ids), dtype=dtype)
        rows["count"], rows["l0"], rows["tenant"] = 5, len(name), name
        rows["l1"], rows["item"] = 8, nb.item_ids
        rows["l2"], rows["neighbor"] = 8, nb.neighbor_ids
        rows["l3"], rows["score"] = 4, nb.scores
        rows["l4"], rows["rank"] = 2, nb.ranks
        parts.append(rows.tobytes())
    parts.append((-1).to_bytes(2, "big", signed=True))
    with conn.cursor().copy(f"copy {table} {_NEIGHBOR_COLUMNS} from stdin (format binary)") as copy:
        copy.write(b"".join(parts))


def publish(url: str, last_event_ids: dict[str, int], full: bool,
            ease: dict[str, ease_module.EaseNeighbors] | None,
            cooccurrence: dict[str, cooccurrence_module.Neighbors] | None = None,
            inputs: dict | None = None, sequence: bool = False) -> list[dict]:
    """One transaction: the neighbour lists and the marts into the tables scoring reads, and the
    refresh state (with the input fingerprints: {"shared": {...}, "ease": {tenant: fp}}).
    sequence: the dbt mart fct_item_sequence was rebuilt by this run, so its lists replace the
    published ones."""
    with connect(url) as conn:
        if sequence:
            # a view, not a copy: the lists are already in the mart; the name tells publish_signals
            # to replace them (the view goes with this connection)
            conn.execute("create temporary view sequence_neighbors as"
                         " select tenant_id, item_id, neighbor_item_id, score, rank from recs_marts.fct_item_sequence")
        if cooccurrence is not None:
            _copy_neighbors(conn, "cooccurrence_neighbors", cooccurrence)
        if ease is not None:
            _copy_neighbors(conn, "ease_neighbors", ease)
        cur = conn.execute(
            "select tenant_id, cooccurrence_items, cooccurrence_rows, ease_rows, sequence_rows, signal_rows"
            " from pgrecs.publish_signals(last_event_ids => %s::jsonb, full_refresh => %s)",
            (json.dumps({k: int(v) for k, v in last_event_ids.items()}), full))
        names = [c.name for c in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
        if ease is not None:
            conn.execute(
                "update pgrecs.refresh_state set ease_items = %s, ease_note = null where tenant_id = any(%s)",
                (None, list(ease)))
            for tenant, nb in ease.items():
                conn.execute("update pgrecs.refresh_state set ease_items = %s where tenant_id = %s",
                             (int(len(np.unique(nb.item_ids))), tenant))
        if inputs is not None:
            conn.execute("update pgrecs.refresh_state set inputs = inputs || jsonb_build_object('shared', %s::jsonb)"
                         " where tenant_id = any(%s)", (json.dumps(inputs["shared"]), list(last_event_ids)))
            for tenant, fingerprint in (inputs.get("ease") or {}).items():
                conn.execute("update pgrecs.refresh_state set inputs = inputs || jsonb_build_object('ease', %s::text)"
                             " where tenant_id = %s", (fingerprint, tenant))
    return rows


def _build(url: str, run_tests: bool, full: bool, dbt_vars: dict, exclude: str | None,
           progress: Callable[[dbt.NodeResult, int, int], None], say: Callable[[str], None]) -> dbt.BuildResult:
    if run_tests:
        # one `dbt build` (one parse, one manifest, one relation cache) rather than dbt run + dbt
        # test: each test runs right after its model, a failure skips what depends on it and
        # still stops the refresh before anything is published. Incremental: the tests on the
        # event-level relations read only what this run could change (macro get_where_subquery)
        say("dbt build")
        return dbt.run(url, "build", full_refresh=full, variables=dbt_vars, exclude=exclude, progress=progress)
    say("dbt run")
    return dbt.run(url, "run", full_refresh=full, variables=dbt_vars, exclude=exclude, progress=progress)


def refresh(url: str, *, full: bool | None = None, ease: bool | None = None, sequence: bool | None = None,
            ease_lambda: float = ease_module.DEFAULT_LAMBDA, ease_max_items: int = ease_module.DEFAULT_MAX_ITEMS,
            ease_semantic_weight: float = ease_module.DEFAULT_SEMANTIC_WEIGHT,
            top_n: int = 50, variables: dict | None = None, run_tests: bool = True,
            cooccurrence_in_dbt: bool = False,
            progress: Callable[[dbt.NodeResult, int, int], None] | None = None,
            step: Callable[[str], None] | None = None) -> RefreshReport:
    """dbt build (models and their tests, which gate publishing; dbt run without tests), co-occurrence (sparse product in
    Python unless cooccurrence_in_dbt: then the dbt mart fct_item_cooccurrence, the slow SQL
    reference), EASE, the next-item lists (on full refreshes unless `sequence` says otherwise),
    and one publishing transaction. `step` is told the name of each step as
    it starts; `progress` gets every dbt node as it finishes."""
    if top_n < 1 or top_n > 1000:
        raise PgrecsError("--top-n must be between 1 and 1000")
    say = step or (lambda _name: None)
    snap = _snapshot(url)
    dbt_vars = dict(variables or {})
    dbt_vars["cooc_top_n"] = top_n
    settings = _settings_fingerprint(url, dbt_vars)
    items = _items_fingerprint(url)
    previous = (snap.inputs or {}).get("shared") or {}
    if full is None:
        full = not snap.has_state
        if not full and previous.get("settings") != settings:
            full = True
            reason = "unknown" if not previous.get("settings") else "changed"
            dbt_vars_note = f"settings {reason} since the last refresh (dbt vars, --top-n, event weights or dbt SQL): full refresh"
            notes = [dbt_vars_note]
        else:
            notes = []
    else:
        notes = []
    report = RefreshReport(mode="full" if full else "incremental", notes=notes)
    # the same vars for the run and the test invocation, and for every incremental refresh: dbt
    # re-parses the whole project whenever the vars differ from its last invocation's
    dbt_vars["full_refresh" if full else "incremental_refresh"] = True

    # the SQL co-occurrence mart and the item norms only it reads (the Python product computes its own)
    excluded = [] if cooccurrence_in_dbt else ["fct_item_cooccurrence", "int_item_basket_norms"]
    report.sequence = full if sequence is None else sequence
    if not report.sequence:
        excluded.append("fct_item_sequence")
        report.notes.append("next-item lists kept from the last full refresh (pass --sequence to recompute them)")
    if not full and previous.get("items") == items and snap.item_relations_exist:
        excluded += ITEM_MODELS
        report.notes.append("no item changed since the last refresh: item text and audit models kept")
    exclude = " ".join(excluded) or None

    # Co-occurrence (Python) reads int_basket_items_weighted, then int_items_cooccurrence_touched:
    # it starts reading the baskets as soon as dbt has built them, while dbt goes on with their
    # tests, the touched items and the other marts, and computes once the touched items are
    # built. A failing dbt node still stops the refresh before anything is published.
    shrinkage = float(_project_var("cooc_shrinkage", dbt_vars))
    pool = None if cooccurrence_in_dbt else ThreadPoolExecutor(max_workers=1)
    touched_built = threading.Event()
    cooccurrence_future: Future | None = None

    def timed_cooccurrence(early: bool):
        began = time.perf_counter()
        result = cooccurrence_module.compute(url, top_n, shrinkage, touched_ready=touched_built.wait if early else None)
        return result, time.perf_counter() - began

    def on_node(node: dbt.NodeResult, index: int, total: int) -> None:
        nonlocal cooccurrence_future
        built_ok = node.kind == "model" and not node.status.lower().startswith(("error", "fail", "skip", "runtime"))
        # early only when baskets changed ("INSERT 0 0": an incremental run without new events)
        if (pool is not None and cooccurrence_future is None and built_ok and node.name == "int_basket_items_weighted"
                and node.status.strip() != "INSERT 0 0"):
            cooccurrence_future = pool.submit(timed_cooccurrence, True)
        if built_ok and node.name == "int_items_cooccurrence_touched":
            touched_built.set()
        if progress:
            progress(node, index, total)

    started = time.perf_counter()
    try:
        built = _build(url, run_tests, full, dbt_vars, exclude, on_node, say)
    except BaseException:
        touched_built.set()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        raise
    touched_built.set()
    if run_tests:
        report.tests = built.tests
        report.test_seconds = sum(n.seconds for n in built.nodes if n.kind in ("test", "unit_test"))
    report.dbt_seconds = time.perf_counter() - started
    report.models = built.models
    report.nodes += built.nodes

    cooccurrence_result = None
    if pool is not None:
        say("co-occurrence")
        started = time.perf_counter()
        with pool:
            if cooccurrence_future is None:  # no basket changed (or the basket model did not run)
                cooccurrence_future = pool.submit(timed_cooccurrence, False)
            cooccurrence_result, report.cooccurrence_compute_seconds = cooccurrence_future.result()
        report.cooccurrence_seconds = time.perf_counter() - started

    ease_result = None
    ease_inputs: dict[str, str] = {}
    if ease is None:
        ease = full
    if ease:
        say("EASE")
        started = time.perf_counter()
        ease_inputs = _ease_fingerprints(url, ease_lambda, top_n, ease_semantic_weight)
        stored = (snap.inputs or {}).get("ease") or {}
        stale = sorted(t for t, fp in ease_inputs.items() if full or stored.get(t) != fp)
        if len(stale) < len(ease_inputs):
            report.notes.append("EASE kept where the user x item matrix is unchanged since it was computed"
                                + (f" (recomputed for {', '.join(stale)})" if stale else ""))
        ease_result = compute_ease(url, ease_lambda, top_n, ease_max_items, report.notes, tenants=stale,
                                   semantic_weight=ease_semantic_weight) if stale else None
        ease_inputs = {t: ease_inputs[t] for t in (ease_result or {})}
        report.ease_seconds = time.perf_counter() - started
    else:
        report.notes.append("EASE kept from the last full refresh (pass --ease to recompute it)")

    say("publish")
    started = time.perf_counter()
    report.tenants = publish(url, snap.last_event_ids, full, ease_result, cooccurrence_result,
                             inputs={"shared": {"settings": settings, "items": items}, "ease": ease_inputs},
                             sequence=report.sequence)
    report.publish_seconds = time.perf_counter() - started
    return report
