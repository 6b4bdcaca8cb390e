"""`pgrecs refresh`: dbt run + dbt test, co-occurrence and EASE in Python, one publishing transaction.

Full refresh: every co-occurrence list, EASE, popularity, audit. Incremental (the default once a
full refresh has run): dbt recomputes only the co-occurrence lists touched by events newer than
pgrecs.refresh_state; EASE is kept as it is unless asked for (it is a global model).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from app import dbt
from app.db import connect
from app.errors import PgrecsError
from app.signals import cooccurrence as cooccurrence_module
from app.signals import ease as ease_module


@dataclass
class RefreshReport:
    mode: str
    dbt_seconds: float = 0.0
    test_seconds: float = 0.0
    cooccurrence_seconds: float = 0.0
    ease_seconds: float = 0.0
    publish_seconds: float = 0.0
    models: int = 0
    tests: int = 0
    tenants: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.dbt_seconds + self.test_seconds + self.cooccurrence_seconds + self.ease_seconds + self.publish_seconds


def _snapshot(url: str) -> tuple[dict[str, int], bool]:
    """Max event id per tenant before the build, and whether every tenant has refresh state."""
    with connect(url) as conn:
        ids = dict(conn.execute(
            "select tenant_id, max(event_id) from pgrecs.events group by tenant_id").fetchall())
        stated = {row[0] for row in conn.execute("select tenant_id from pgrecs.refresh_state").fetchall()}
    return ids, bool(ids) and set(ids) <= stated


def compute_ease(url: str, lam: float, top_n: int, max_items: int,
                 notes: list[str]) -> dict[str, ease_module.EaseNeighbors]:
    """EASE neighbours per tenant from recs_intermediate.int_user_items_aggregated."""
    out: dict[str, ease_module.EaseNeighbors] = {}
    with connect(url) as conn:
        tenants = conn.execute(
            "select tenant_id, count(distinct item_id) from recs_intermediate.int_user_items_aggregated "
            "group by tenant_id order by tenant_id").fetchall()
        for tenant, n_items in tenants:
            if n_items > max_items:
                notes.append(
                    f"EASE skipped for tenant {tenant}: {n_items:,} items with interactions exceed the limit of "
                    f"{max_items:,} (raise --ease-max-items if memory allows; scoring uses co-occurrence)")
                continue
            rows = conn.execute(
                "select user_id, item_id from recs_intermediate.int_user_items_aggregated where tenant_id = %s",
                (tenant,)).fetchall()
            pairs = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
            out[tenant] = ease_module.ease_from_pairs(pairs[:, 0], pairs[:, 1], lam=lam, top_n=top_n)
    return out


def _project_var(name: str, variables: dict):
    """A dbt var: the override passed to this refresh, else dbt_project.yml's default."""
    import yaml

    if name in variables:
        return variables[name]
    with open(dbt.PROJECT_DIR / "dbt_project.yml", encoding="utf-8") as f:
        return (yaml.safe_load(f).get("vars") or {}).get(name)


def publish(url: str, last_event_ids: dict[str, int], full: bool,
            ease: dict[str, ease_module.EaseNeighbors] | None,
            cooccurrence: dict[str, cooccurrence_module.Neighbors] | None = None) -> list[dict]:
    with connect(url) as conn:
        if cooccurrence is not None:
            conn.execute(
                "create temporary table cooccurrence_neighbors (tenant_id text, item_id bigint,"
                " neighbor_item_id bigint, score real, rank smallint) on commit drop")
            with conn.cursor().copy(
                    "copy cooccurrence_neighbors (tenant_id, item_id, neighbor_item_id, score, rank) from stdin") as copy:
                for tenant, nb in cooccurrence.items():
                    for row in zip(nb.item_ids.tolist(), nb.neighbor_ids.tolist(), nb.scores.tolist(),
                                   nb.ranks.tolist()):
                        copy.write_row((tenant, *row))
        if ease is not None:
            conn.execute(
                "create temporary table ease_neighbors (tenant_id text, item_id bigint, neighbor_item_id bigint,"
                " score real, rank smallint) on commit drop")
            with conn.cursor().copy(
                    "copy ease_neighbors (tenant_id, item_id, neighbor_item_id, score, rank) from stdin") as copy:
                for tenant, nb in ease.items():
                    for row in zip(nb.item_ids.tolist(), nb.neighbor_ids.tolist(), nb.scores.tolist(),
                                   nb.ranks.tolist()):
                        copy.write_row((tenant, *row))
        cur = conn.execute(
            "select tenant_id, cooccurrence_items, cooccurrence_rows, ease_rows, signal_rows"
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
    return rows


def refresh(url: str, *, full: bool | None = None, ease: bool | None = None,
            ease_lambda: float = ease_module.DEFAULT_LAMBDA, ease_max_items: int = ease_module.DEFAULT_MAX_ITEMS,
            top_n: int = 50, variables: dict | None = None, run_tests: bool = True,
            cooccurrence_in_dbt: bool = False,
            progress: Callable[[dbt.NodeResult, int, int], None] | None = None) -> RefreshReport:
    """dbt run, then the dbt tests (they gate publishing), co-occurrence (sparse product in
    Python unless cooccurrence_in_dbt: then the dbt mart fct_item_cooccurrence, the slow SQL
    reference), EASE, and one publishing transaction."""
    if top_n < 1 or top_n > 1000:
        raise PgrecsError("--top-n must be between 1 and 1000")
    last_event_ids, has_state = _snapshot(url)
    full = (not has_state) if full is None else full
    ease = full if ease is None else ease
    report = RefreshReport(mode="full" if full else "incremental")
    dbt_vars = dict(variables or {})
    dbt_vars["cooc_top_n"] = top_n
    if full:
        dbt_vars["full_refresh"] = True

    exclude = None if cooccurrence_in_dbt else "fct_item_cooccurrence"
    started = time.perf_counter()
    built = dbt.run(url, "run", full_refresh=full, variables=dbt_vars, exclude=exclude, progress=progress)
    report.dbt_seconds = time.perf_counter() - started
    report.models = built.models
    if run_tests:
        # after every model rather than interleaved (dbt build): one pass, and a failure still
        # stops the refresh before anything is published
        started = time.perf_counter()
        tested = dbt.run(url, "test", variables=dbt_vars, exclude=exclude, progress=progress)
        report.test_seconds = time.perf_counter() - started
        report.tests = tested.tests

    cooccurrence_result = None
    if not cooccurrence_in_dbt:
        started = time.perf_counter()
        cooccurrence_result = cooccurrence_module.compute(
            url, top_n, float(_project_var("cooc_shrinkage", dbt_vars)))
        report.cooccurrence_seconds = time.perf_counter() - started

    ease_result = None
    if ease:
        started = time.perf_counter()
        ease_result = compute_ease(url, ease_lambda, top_n, ease_max_items, report.notes)
        report.ease_seconds = time.perf_counter() - started
    else:
        report.notes.append("EASE kept from the last full refresh (pass --ease to recompute it)")

    started = time.perf_counter()
    report.tenants = publish(url, last_event_ids, full, ease_result, cooccurrence_result)
    report.publish_seconds = time.perf_counter() - started
    return report
