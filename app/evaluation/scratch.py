"""Evaluation through the serving SQL, without leakage.

A scratch database is created on the same server, migrated, and given the catalogue (items,
users, embedding models, item embeddings, semantic neighbour lists: all derived from item text,
never from events), the placements, and only the training events of a split. The same refresh
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

from app.errors import PgrecsError
from app.evaluation.data import Catalog, Interactions

# tables copied as they are (the catalogue side; nothing here is derived from events)
_CATALOG_COPIES = (
    ("pgrecs.embedding_models", None),
    ("pgrecs.items", "tenant_id = %(t)s"),
    ("pgrecs.users", "tenant_id = %(t)s"),
    ("pgrecs.item_embeddings", "tenant_id = %(t)s"),
    ("pgrecs.item_neighbors", "tenant_id = %(t)s and signal = 'semantic'"),
)


def _with_db(url: str, dbname: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)


@contextlib.contextmanager
def scratch_database(source_url: str, label: str = "eval", keep: bool = False) -> Iterator[str]:
    """A new, migrated database on the source's server; dropped on exit unless keep."""
    from app import migrate

    name = f"pgrecs_{label}_{secrets.token_hex(4)}"
    admin = _with_db(source_url, "postgres")
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise PgrecsError(f"cannot create the scratch database for evaluation: {str(exc).strip().splitlines()[0]}") from exc
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
    with src.cursor() as rc, dst.cursor() as wc:
        with rc.copy(query, {"t": tenant}) as cin, \
                wc.copy(sql.SQL("copy {} ({}) from stdin").format(ident, col_sql)) as cout:
            for row in cin:
                if keep_row is None or keep_row(bytes(row)):
                    cout.write(row)
                    n += 1
    return n


def populate(source_url: str, scratch_url: str, tenant: str, train_event_ids: np.ndarray) -> dict:
    """Copy the catalogue side and the training events into the scratch database."""
    keep = set(int(e) for e in train_event_ids)
    counts = {}
    with psycopg.connect(source_url) as src, psycopg.connect(scratch_url) as dst:
        dst.execute("insert into pgrecs.tenants (tenant_id, name) select %s, %s on conflict do nothing",
                    (tenant, tenant))
        dst.execute("delete from pgrecs.embedding_models")
        dst.execute("delete from pgrecs.placements where tenant_id = %s", (tenant,))
        for table, where in _CATALOG_COPIES:
            counts[table] = _copy_table(src, dst, table, where, tenant)
        counts["pgrecs.placements"] = _copy_table(src, dst, "pgrecs.placements", "tenant_id = %(t)s", tenant)

        def is_train(line: bytes) -> bool:
            return int(line.split(b"\t", 1)[0]) in keep

        counts["pgrecs.events"] = _copy_table(src, dst, "pgrecs.events", "tenant_id = %(t)s", tenant, is_train)
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


def refresh(scratch_url: str, tenant: str) -> None:
    """Run the production refresh pipeline (`pgrecs refresh`) against the scratch database."""
    from app.cli import main

    if "refresh" not in main.commands:
        raise PgrecsError("`pgrecs refresh` is not available: SQL strategies need the dbt signals")
    try:
        main.main(["--db-url", scratch_url, "--tenant", tenant, "refresh", "--full", "--ease", "--quiet"], standalone_mode=False)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise PgrecsError("`pgrecs refresh` failed on the evaluation database") from exc


MAX_K = 100  # recs.recommend_for_user accepts k in [1, 100]
SINGLE_SIGNAL_POOLS = {"semantic": 50, "cooccurrence": 50, "ease": 50, "popularity": 300}


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
        from app.db import connect

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
