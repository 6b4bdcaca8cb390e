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
- EASE, a global model, is recomputed on full refreshes where it is solved densely and kept
  otherwise unless asked for (--ease); a tenant too large for the dense solve is fitted by
  blocks on its own schedule (`pgrecs refresh --cf`, refresh_collaborative; see
  pgrecs.signals.ease_fit). A fit is skipped when the user x item matrix and the embeddings it
  reads as side information are the ones it was computed from (fingerprint `ease`);
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
from dataclasses import dataclass, field, replace

import numpy as np

import hashlib

from pgrecs import dbt
from pgrecs.db import connect
from pgrecs.errors import PgrecsError
from pgrecs.signals import cooccurrence as cooccurrence_module
from pgrecs.signals import ease as ease_module
from pgrecs.signals import ease_fit
from pgrecs.signals.ease_fit import EaseSettings


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


def _ease_fingerprints(url: str, settings: EaseSettings) -> dict[str, str]:
    """Per tenant, the binary user x item matrix EASE reads and, when side information is on, the
    embeddings it reads, with its parameters."""
    with connect(url) as conn:
        rows = conn.execute(
            "select tenant_id, count(*), sum(hashtextextended(user_id::text || ',' || item_id::text, 0))::text"
            " from recs_intermediate.int_user_items_aggregated group by tenant_id").fetchall()
        embedded = dict(conn.execute(
            "select e.tenant_id, count(*) || ':' || sum(hashtextextended(e.item_id::text || encode(e.text_sha256, 'hex'), 0))"
            + ease_fit.EMBEDDINGS_FROM + " group by e.tenant_id").fetchall()) if settings.semantic_weight > 0 else {}
    solver = f"{settings.method}:{settings.max_dense_items}:{settings.block_size}:{settings.halo_size}"
    return {tenant: f"{count}:{total}:{settings.lam}:{settings.top_n}:{settings.semantic_weight}:{solver}:"
                    f"{embedded.get(tenant, '')}"
            for tenant, count, total in rows}


def _stale_ease(url: str, settings: EaseSettings, snap: Snapshot, everything: bool,
                notes: list[str]) -> tuple[dict[str, str], list[str]]:
    """(fingerprint per tenant, the tenants to refit: all with `everything`, else those whose
    fingerprint differs from the one their lists were fitted from)."""
    fingerprints = _ease_fingerprints(url, settings)
    stored = (snap.inputs or {}).get("ease") or {}
    stale = sorted(t for t, fp in fingerprints.items() if everything or stored.get(t) != fp)
    if len(stale) < len(fingerprints):
        notes.append("EASE kept where the user x item matrix is unchanged since it was fitted"
                     + (f" (refitted for {', '.join(stale)})" if stale else ""))
    return fingerprints, stale


def _project_var(name: str, variables: dict):
    """A dbt var: the override passed to this refresh, else dbt_project.yml's default."""
    import yaml

    if name in variables:
        return variables[name]
    with open(dbt.PROJECT_DIR / "dbt_project.yml", encoding="utf-8") as f:
        return (yaml.safe_load(f).get("vars") or {}).get(name)


_NEIGHBOR_COLUMNS = "(tenant_id, item_id, neighbor_item_id, score, rank)"

# The neighbour signals a refresh builds from the events, each with the relation its lists are
# published from (pgrecs.publish_signals). A new signal from a dbt mart is one line here and one
# row of pgrecs.signals; the evaluation rebuilds these from its training events (and copies
# every other signal's lists, which events do not feed).
REFRESHED_SIGNALS = {
    "cooccurrence": "recs_marts.fct_item_cooccurrence",
    "sequence": "recs_marts.fct_item_sequence",  # published when this run rebuilt the mart
    "ease": "pg_temp.ease_neighbors",  # published when this run fitted EASE
}


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
            inputs: dict | None = None, sequence: bool = False,
            fits: list[ease_fit.FitRecord] | None = None) -> list[dict]:
    """One transaction: the neighbour lists and the marts into the tables scoring reads, the
    refresh state (with the input fingerprints: {"shared": {...}, "ease": {tenant: fp}}) and the
    lineage of the EASE fits.
    sequence: the dbt mart fct_item_sequence was rebuilt by this run, so its lists replace the
    published ones."""
    lists: dict = dict(REFRESHED_SIGNALS)
    if cooccurrence is not None:  # computed in Python (the default) rather than by the dbt mart
        lists["cooccurrence"] = "pg_temp.cooccurrence_neighbors"
    # co-occurrence replaces only the lists of the items this run recomputed (all when full)
    lists["cooccurrence"] = {"source": lists["cooccurrence"], "items": "recs_intermediate.int_items_cooccurrence_touched"}
    if not sequence:
        del lists["sequence"]
    if ease is None:
        del lists["ease"]
    with connect(url) as conn:
        if cooccurrence is not None:
            _copy_neighbors(conn, "cooccurrence_neighbors", cooccurrence)
        if ease is not None:
            _copy_neighbors(conn, "ease_neighbors", ease)
        cur = conn.execute(
            "select tenant_id, lists, signal_rows"
            " from pgrecs.publish_signals(last_event_ids => %s::jsonb, full_refresh => %s, publish => %s::jsonb)",
            (json.dumps({k: int(v) for k, v in last_event_ids.items()}), full, json.dumps(lists)))
        published = cur.fetchall()
        signals = [s for (s,) in conn.execute("select signal from pgrecs.signals where kind = 'neighbors' order by 1")]
        rows = [_published_row(tenant, counts, signal_rows, signals) for tenant, counts, signal_rows in published]
        if ease is not None:
            _record_ease(conn, ease, (inputs or {}).get("ease") or {}, fits or [])
        if inputs is not None:
            conn.execute("update pgrecs.refresh_state set inputs = inputs || jsonb_build_object('shared', %s::jsonb)"
                         " where tenant_id = any(%s)", (json.dumps(inputs["shared"]), list(last_event_ids)))
    return rows


def _published_row(tenant: str, counts: dict, signal_rows: int, signals: list[str]) -> dict:
    """One tenant's publication: `<signal>_lists` and `<signal>_rows` of every neighbour signal
    (0 for those this run kept), and `signal_rows`, the item signals written."""
    row: dict = {"tenant_id": tenant}
    for signal in signals:
        row[f"{signal}_lists"] = counts.get(signal, {}).get("lists", 0)
        row[f"{signal}_rows"] = counts.get(signal, {}).get("rows", 0)
    row["signal_rows"] = signal_rows
    return row


def _record_ease(conn, ease: dict[str, ease_module.EaseNeighbors], fingerprints: dict[str, str],
                 fits: list[ease_fit.FitRecord]) -> None:
    """Per tenant refitted: the items with EASE lists, the fingerprint it was fitted from, and the
    lineage of every attempted fit (refused ones included)."""
    for tenant, nb in ease.items():
        conn.execute("update pgrecs.refresh_state set ease_items = %s, ease_note = null where tenant_id = %s",
                     (int(len(np.unique(nb.item_ids))), tenant))
    for tenant, fingerprint in fingerprints.items():
        conn.execute("update pgrecs.refresh_state set inputs = inputs || jsonb_build_object('ease', %s::text)"
                     " where tenant_id = %s", (fingerprint, tenant))
    ease_fit.record_fits(conn, fits)


def refresh_collaborative(url: str, settings: EaseSettings, force: bool = False) -> ease_fit.CfReport:
    """`pgrecs refresh --cf`: only the learned collaborative model. Every tenant whose interaction
    matrix (as the last refresh built it), embeddings or parameters changed since its last fit
    (every tenant with force) is fitted, dense or by blocks, and its lists, refresh state and
    lineage are published in one transaction; no dbt build, nothing else replaced."""
    report = ease_fit.CfReport()
    started = time.perf_counter()
    snap = _snapshot(url)
    if not snap.marks:
        raise PgrecsError("no refresh has run yet: run `pgrecs refresh` first (it builds the interaction matrix)")
    fingerprints, stale = _stale_ease(url, settings, snap, force, report.notes)
    result = ease_fit.compute_ease(url, settings, report.notes, tenants=stale, last_event_ids=snap.marks,
                                   fits=report.fits) if stale else {}
    with connect(url) as conn:
        if result:
            _copy_neighbors(conn, "ease_neighbors", result)
            cur = conn.execute("select tenant_id, list_rows from pgrecs.replace_signal_lists('ease')")
            report.published = [{"tenant_id": t, "ease_rows": n} for t, n in cur.fetchall()]
        _record_ease(conn, result, {t: fingerprints[t] for t in result}, report.fits)
    report.seconds = time.perf_counter() - started
    refused = [f for f in report.fits if f.status == "refused"]
    if refused:
        more = f" ({len(refused) - 1} more tenants refused)" if len(refused) > 1 else ""
        raise PgrecsError(refused[0].note + more)
    return report


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
            ease_settings: EaseSettings | None = None, top_n: int = 50, variables: dict | None = None, run_tests: bool = True,
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
    fits: list[ease_fit.FitRecord] = []
    ease_settings = replace(ease_settings or EaseSettings(), top_n=top_n)
    if ease is None:
        # a plain full refresh fits dense EASE inline; a model that needs the block solver runs on
        # its own schedule (`pgrecs refresh --cf`), so the refresh keeps its time budget
        ease, defer_blocks = full, True
    else:
        defer_blocks = False
    if ease:
        say("EASE")
        started = time.perf_counter()
        ease_inputs, stale = _stale_ease(url, ease_settings, snap, full, report.notes)
        ease_result = ease_fit.compute_ease(url, ease_settings, report.notes, tenants=stale,
                                            last_event_ids=snap.last_event_ids, fits=fits,
                                            defer_blocks=defer_blocks) if stale else None
        ease_inputs = {t: ease_inputs[t] for t in (ease_result or {})}
        report.ease_seconds = time.perf_counter() - started
    else:
        report.notes.append("EASE kept from the last full refresh (pass --ease to recompute it)")

    say("publish")
    started = time.perf_counter()
    report.tenants = publish(url, snap.last_event_ids, full, ease_result, cooccurrence_result,
                             inputs={"shared": {"settings": settings, "items": items}, "ease": ease_inputs},
                             sequence=report.sequence, fits=fits)
    report.publish_seconds = time.perf_counter() - started
    return report
