"""Evaluation through the serving SQL, without leakage.

A scratch database is created on the same server, migrated, and given the catalogue (items,
users, embedding models, item embeddings, the signal registry and the neighbour lists of every
signal the refresh does not build from events, such as the semantic lists derived from item
text), the placements, and only the training events of a split. The same refresh
pipeline as production (`pgrecs refresh`) then rebuilds co-occurrence, EASE and popularity from
those events, and every SQL strategy calls recs.recommend_for_user exactly as the API does.

Training events are shifted in time so that the last one lands at now(): the recency decay of
user histories and popularity then behaves as if serving at the split's cut-off moment.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator

import numpy as np
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgrecs.errors import PgrecsError, first_line
from pgrecs.evaluation.data import Catalog, Interactions
from pgrecs.signals.refresh import REFRESHED_SIGNALS

# tables copied as they are (the catalogue side; nothing here is derived from events)
_CATALOG_COPIES = (
    ("pgrecs.embedding_models", None),
    ("pgrecs.items", "tenant_id = %(t)s"),
    ("pgrecs.users", "tenant_id = %(t)s"),
    ("pgrecs.item_embeddings", "tenant_id = %(t)s"),
    # the lists no event feeds (semantic, hand-made ones); the refreshed signals are rebuilt
    ("pgrecs.item_neighbors", "tenant_id = %(t)s and signal <> all(%(refreshed)s::text[])"),
)


def _with_db(url: str, dbname: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)


@contextlib.contextmanager
def scratch_database(source_url: str, label: str = "eval", keep: bool = False) -> Iterator[str]:
    """A new, migrated database on the source's server; dropped on exit unless keep."""
    from pgrecs import migrate

    name = f"pgrecs_{label}_{secrets.token_hex(4)}"
    admin = _with_db(source_url, "postgres")
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise PgrecsError(f"cannot create the scratch database for evaluation: {first_line(exc)}") from exc
    url = _with_db(source_url, name)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        if not keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def _copy_table(src: psycopg.Connection, dst: psycopg.Connection, table: str, where: str | None,
                tenant: str, keep_row=None) -> int:
    schema, name = table.split(".")
    ident = sql.Identifier(schema, name)
    cols = [r[0] for r in src.execute(
        "select column_name from information_schema.columns where table_schema = %s and table_name = %s "
        "and is_generated = 'NEVER' order by ordinal_position", (schema, name)).fetchall()]
    col_sql = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
    select = sql.SQL("select {} from {}").format(col_sql, ident)
    if where:
        select = sql.SQL("{} where {}").format(select, sql.SQL(where))
    query = sql.SQL("copy ({}) to stdout").format(select)
    n = 0
    params = {"t": tenant, "refreshed": list(REFRESHED_SIGNALS)}
    with src.cursor() as rc, dst.cursor() as wc:
        with rc.copy(query, params) as cin, \
                wc.copy(sql.SQL("copy {} ({}) from stdin").format(ident, col_sql)) as cout:
            for row in cin:
                if keep_row is None or keep_row(bytes(row)):
                    cout.write(row)
                    n += 1
    return n


def populate(source_url: str, scratch_url: str, tenant: str, train_event_ids: np.ndarray,
             known_item_ids: np.ndarray | None = None) -> dict:
    """Copy the catalogue side and the training events into the scratch database. With
    `known_item_ids` (a time split: the items known at the cut-off) every other item is made
    inactive there, so no ranking can return an item the shop did not have yet."""
    keep = set(int(e) for e in train_event_ids)
    counts = {}
    with psycopg.connect(source_url) as src, psycopg.connect(scratch_url) as dst:
        dst.execute("insert into pgrecs.tenants (tenant_id, name) select %s, %s on conflict do nothing",
                    (tenant, tenant))
        dst.execute("delete from pgrecs.embedding_models")
        dst.execute("delete from pgrecs.placements where tenant_id = %s", (tenant,))
        # signals registered in the source beyond the seeded ones
        dst.cursor().executemany(
            "insert into pgrecs.signals (signal, kind, reason_format, description) values (%s, %s, %s, %s)"
            " on conflict (signal) do nothing",
            src.execute("select signal, kind, reason_format, description from pgrecs.signals").fetchall())
        for table, where in _CATALOG_COPIES:
            counts[table] = _copy_table(src, dst, table, where, tenant)
        counts["pgrecs.placements"] = _copy_table(src, dst, "pgrecs.placements", "tenant_id = %(t)s", tenant)

        def is_train(line: bytes) -> bool:
            return int(line.split(b"\t", 1)[0]) in keep

        counts["pgrecs.events"] = _copy_table(src, dst, "pgrecs.events", "tenant_id = %(t)s", tenant, is_train)
        if known_item_ids is not None:
            known = [int(i) for i in known_item_ids]
            counts["inactive_unknown_items"] = dst.execute(
                "update pgrecs.items set active = false where tenant_id = %s and active and not (item_id = any(%s))",
                (tenant, known)).rowcount
            dst.execute("update pgrecs.item_embeddings set active = false "
                        "where tenant_id = %s and active and not (item_id = any(%s))", (tenant, known))
        # serve "at the cut-off": the last training event happens now
        dst.execute(
            """
            update pgrecs.events
            set occurred_at = occurred_at + (now() - (select max(occurred_at) from pgrecs.events where tenant_id = %(t)s))
            where tenant_id = %(t)s
            """,
            {"t": tenant},
        )
        for table in ("items", "users", "events", "embedding_models"):
            key = {"items": "item_id", "users": "user_id", "events": "event_id", "embedding_models": "model_id"}[table]
            dst.execute(sql.SQL("select setval(pg_get_serial_sequence({}, {}), coalesce((select max({}) from {}), 0) + 1, false)").format(
                sql.Literal(f"pgrecs.{table}"), sql.Literal(key), sql.Identifier(key), sql.Identifier("pgrecs", table)))
        dst.commit()
    return counts


def refresh(scratch_url: str, tenant: str, signal_params: dict | None = None) -> None:
    """Run the production refresh pipeline (`pgrecs refresh`) against the scratch database, with
    the signal parameters chosen by tuning (`ease_lambda`, dbt vars such as `cooc_shrinkage`).
    The dbt data tests are skipped: the scratch data is a filtered copy of the loaded tables."""
    from pgrecs.cli import main

    if "refresh" not in main.commands:
        raise PgrecsError("`pgrecs refresh` is not available: SQL strategies need the dbt signals")
    args = ["--db-url", scratch_url, "--tenant", tenant, "refresh", "--full", "--ease", "--quiet", "--no-test"]
    for key, value in sorted((signal_params or {}).items()):
        if key in ("ease_lambda", "ease_semantic_weight"):
            args += ["--" + key.replace("_", "-"), str(value)]
        else:
            args += ["--var", f"{key}={value}"]
    try:
        main.main(args, standalone_mode=False)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise PgrecsError("`pgrecs refresh` failed on the evaluation database") from exc


MAX_K = 100  # recs.recommend_for_user accepts k in [1, 100]
SINGLE_SIGNAL_POOLS = {"popularity": 300}  # candidates per signal on its own; 50 for the others


def add_placement(conn: psycopg.Connection, tenant: str, name: str, base: str, overrides: dict) -> None:
    """A placement row = `base` with some columns replaced (weights, pools, mmr_lambda, ...)."""
    conn.execute("delete from pgrecs.placements where tenant_id = %s and placement = %s", (tenant, name))
    cur = conn.execute(
        """
        insert into pgrecs.placements
        select (jsonb_populate_record(null::pgrecs.placements, to_jsonb(p) || %s::jsonb)).*
        from pgrecs.placements p
        where p.tenant_id = %s
          and p.placement = %s
        """,
        (json.dumps({"placement": name, **overrides}), tenant, base),
    )
    if cur.rowcount != 1:
        raise PgrecsError(f"unknown placement: {base}")


def signal_overrides(weights: dict[str, float], pools: dict | None = None) -> dict:
    """Placement overrides for a pure weights configuration: no caps, no default filters."""
    return {
        "weights": weights,
        "pool_sizes": pools or {s: SINGLE_SIGNAL_POOLS.get(s, 50) for s in weights},
        "default_filters": {},
        "max_per_brand": None,
        "max_per_category": None,
    }


class SQLStrategy:
    """Recommendations from recs.recommend_for_user(user, k, placement) in the scratch database."""

    def __init__(self, url: str, tenant: str, placement: str, catalog: Catalog, inter: Interactions,
                 train_items: dict[int, set[int]], name: str | None = None, max_extra: int = 200) -> None:
        self.url, self.tenant, self.placement = url, tenant, placement
        self.catalog, self.inter, self.train_items = catalog, inter, train_items
        self.name = name or placement
        self.max_extra = max_extra

    def recommend(self, users, k: int) -> dict[int, np.ndarray]:
        from pgrecs.db import connect

        out: dict[int, np.ndarray] = {}
        code_of = self.catalog.code_of
        with connect(self.url, tenant=self.tenant) as conn:
            for u in sorted(users):
                seen = self.train_items.get(u, set())
                # recommend_for_user already leaves out the user's history (allow_repeats false);
                # the extra rows are a margin, within the function's k limit of 100
                ask = min(k + min(len(seen), self.max_extra), MAX_K)
                try:
                    rows = conn.execute(
                        "select r.item_id from recs.recommend_for_user(user_id => %s, k => %s, placement => %s) r "
                        "order by r.rank",
                        (int(self.inter.user_ids[u]), ask, self.placement),
                    ).fetchall()
                except psycopg.errors.NoDataFound:
                    conn.rollback()
                    rows = []
                codes = [code_of[r[0]] for r in rows if r[0] in code_of and code_of[r[0]] not in seen]
                out[u] = np.array(codes[:k], dtype=np.int64)
        return out


# --- signal variants in a scratch database (tuning and the normalisation comparison) ----------

def replace_neighbors(url: str, tenant: str, signal: str, nb) -> int:
    """Swap one signal's neighbour lists in a scratch database for `nb` (item_ids, neighbor_ids,
    scores, ranks arrays, as pgrecs.signals builds them)."""
    with psycopg.connect(url) as conn:
        conn.execute("delete from pgrecs.item_neighbors where tenant_id = %s and signal = %s", (tenant, signal))
        with conn.cursor().copy("copy pgrecs.item_neighbors (tenant_id, signal, item_id, neighbor_item_id, score, rank)"
                                " from stdin") as copy:
            for row in zip(nb.item_ids.tolist(), nb.neighbor_ids.tolist(), nb.scores.tolist(), nb.ranks.tolist()):
                copy.write_row((tenant, signal, *row))
        conn.commit()
    return len(nb.item_ids)


def other_embedding_models(url: str, tenant: str) -> list[str]:
    """Registered models other than the default with embeddings for the tenant (candidates for
    `semantic:<model>` strategies)."""
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "select m.name from pgrecs.embedding_models as m where not m.is_default and exists ("
            "select 1 from pgrecs.item_embeddings as e where e.model_id = m.model_id and e.tenant_id = %s) "
            "order by m.model_id", (tenant,))]


def use_semantic_model(url: str, tenant: str, model: str, neighbors: int = 50) -> int:
    """Make `model` the scratch database's default and rebuild its semantic neighbour lists from
    that model's embeddings, as `pgrecs embed` does for the default model; returns the lists built."""
    with psycopg.connect(url) as conn:
        conn.execute("select set_config('pgrecs.tenant', %s, false)", (tenant,))
        conn.execute("update pgrecs.embedding_models set is_default = false where is_default")
        # a candidate serves in the scratch database only: the default model is always active
        conn.execute("update pgrecs.embedding_models set is_default = true, state = 'active' where name = %s", (model,))
        conn.execute("delete from pgrecs.item_neighbors where tenant_id = %s and signal = 'semantic'", (tenant,))
        ids = [r[0] for r in conn.execute(
            "select e.item_id from pgrecs.item_embeddings as e join pgrecs.embedding_models as m using (model_id) "
            "where m.name = %s and e.tenant_id = %s", (model, tenant))]
        conn.execute("select pgrecs.refresh_semantic_neighbors(%s, %s, false)", (ids, neighbors))
        conn.commit()
    return len(ids)


def _baskets(url: str, tenant: str):
    """(basket ids, item ids, weights) of the tenant's baskets, and the tie keys of the distinct
    item ids in sorted order."""
    from pgrecs.signals.cooccurrence import _read_columns
    from pgrecs.signals.ties import read_tie_keys

    with psycopg.connect(url) as conn:
        baskets, items, weights = _read_columns(
            conn, "select basket_id, item_id, weight::float8 from recs_intermediate.int_basket_items_weighted"
            " where tenant_id = %s", (tenant,), ("int8", "int8", "float8"))
        return baskets, items, weights, read_tie_keys(conn, np.unique(items))


def cooccurrence_neighbors(url: str, tenant: str, shrinkage: float, top_n: int = 50):
    """Co-occurrence lists exactly as `pgrecs refresh` scores them, for another shrinkage."""
    from pgrecs.signals.cooccurrence import neighbors_from_baskets

    baskets, items, weights, tie_keys = _baskets(url, tenant)
    return neighbors_from_baskets(baskets, items, weights, None, top_n, shrinkage, lambda ids: tie_keys)


def raw_count_neighbors(url: str, tenant: str, top_n: int = 50):
    """The un-normalised alternative: neighbours ranked by the number of baskets holding both
    items (ties by tie key), score = that count."""
    from pgrecs.signals.cooccurrence import Neighbors
    from scipy import sparse

    baskets, items, _, tie_keys = _baskets(url, tenant)
    item_ids, col = np.unique(items, return_inverse=True)
    _, row = np.unique(baskets, return_inverse=True)
    b = sparse.csr_matrix((np.ones(len(col)), (row, col)), shape=(int(row.max()) + 1, len(item_ids)))
    b.data[:] = 1.0
    counts = (b.T @ b).tocsr()
    out = [[], [], [], []]
    for r in range(counts.shape[0]):
        lo, hi = counts.indptr[r], counts.indptr[r + 1]
        cols, vals = counts.indices[lo:hi], counts.data[lo:hi]
        keep = cols != r
        cols, vals = cols[keep], vals[keep]
        if len(cols) == 0:
            continue
        order = np.lexsort((tie_keys[cols], -vals))[:top_n]
        out[0].append(np.full(len(order), item_ids[r]))
        out[1].append(item_ids[cols[order]])
        out[2].append(vals[order])
        out[3].append(np.arange(1, len(order) + 1))
    cat = [np.concatenate(x) if x else np.array([], dtype=np.int64) for x in out]
    return Neighbors(cat[0], cat[1], cat[2], cat[2].astype(np.int64), cat[3])


def ease_neighbors(url: str, tenant: str, lam: float, semantic_weight: float, top_n: int = 50, **solver):
    """EASE lists exactly as `pgrecs refresh` builds them, for other parameters (`solver`: other
    EaseSettings fields, e.g. method="blocks", block_size=500)."""
    from pgrecs.signals.ease_fit import EaseSettings, compute_ease

    notes: list[str] = []
    settings = EaseSettings(lam=lam, semantic_weight=semantic_weight, top_n=top_n, **solver)
    result = compute_ease(url, settings, notes, tenants=[tenant])
    if tenant not in result:
        raise PgrecsError("; ".join(notes) or f"no interactions for tenant {tenant!r}")
    return result[tenant]
