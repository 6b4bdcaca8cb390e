"""Interactions and catalog read from the database into dense integer codes.

Codes never follow load order: item codes follow the items' tie keys (a hash of the external id)
and user codes the users' external ids, so whatever order a file had, the same events give the
same arrays up to the order of events inside a tie, which nothing downstream reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import psycopg

# Events that count as a positive interaction for offline evaluation (impressions do not).
POSITIVE_EVENTS = ("view", "click", "rating", "add_to_cart", "purchase")


@dataclass
class Catalog:
    item_ids: np.ndarray                 # database item_id per item code
    brands: np.ndarray                   # object array, None where unknown
    categories: np.ndarray               # first category path element, None where unknown
    tie_keys: np.ndarray | None = None   # items.tie_key per item code: breaks score ties in every ranking
    prices: np.ndarray | None = None     # float, NaN where unknown
    margins: np.ndarray | None = None    # float, NaN where unknown
    embeddings: np.ndarray | None = None  # unit-norm rows (code order), NaN rows where missing
    code_of: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.code_of = {int(i): c for c, i in enumerate(self.item_ids)}
        if self.tie_keys is None:
            self.tie_keys = self.item_ids.copy()

    @property
    def tie_order(self) -> np.ndarray:
        """Position of each item code in tie_key order: the tie-break rank of equal scores."""
        order = np.argsort(self.tie_keys, kind="stable")
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        return rank

    @property
    def size(self) -> int:
        return len(self.item_ids)


@dataclass
class Interactions:
    """Parallel arrays in load order (event_id ascending). Nothing downstream may depend on that
    order among events of one user at one timestamp (a tie group): tests/test_evaluation_invariance.py."""

    event_id: np.ndarray
    user: np.ndarray      # user code
    item: np.ndarray      # item code
    ts: np.ndarray        # epoch seconds (float)
    user_ids: np.ndarray  # database user_id per user code
    user_keys: np.ndarray  # external id per user code
    session: np.ndarray | None = None  # session / basket id per event (object, None where absent)

    def subset(self, mask: np.ndarray) -> "Interactions":
        return Interactions(self.event_id[mask], self.user[mask], self.item[mask], self.ts[mask],
                            self.user_ids, self.user_keys, None if self.session is None else self.session[mask])

    def __len__(self) -> int:
        return len(self.event_id)


def load_catalog(conn: psycopg.Connection, tenant: str, with_embeddings: bool = True) -> Catalog:
    rows = conn.execute(
        """
        select i.item_id, i.brand, i.category_path[1], i.tie_key, i.price::float8, i.margin::float8
        from pgrecs.items i
        where i.tenant_id = %s
          and i.active
        -- item codes in tie-key order: they (and every tie among them) carry no load order
        order by i.tie_key, i.item_id
        """,
        (tenant,),
    ).fetchall()
    catalog = Catalog(
        item_ids=np.array([r[0] for r in rows], dtype=np.int64),
        brands=np.array([(r[1] or "").strip().lower() or None for r in rows], dtype=object),
        categories=np.array([r[2] for r in rows], dtype=object),
        tie_keys=np.array([r[3] for r in rows], dtype=np.int64),
        prices=np.array([np.nan if r[4] is None else r[4] for r in rows], dtype=np.float64),
        margins=np.array([np.nan if r[5] is None else r[5] for r in rows], dtype=np.float64),
    )
    if with_embeddings:
        catalog.embeddings = load_embeddings(conn, tenant, catalog)
    return catalog


def load_embeddings(conn: psycopg.Connection, tenant: str, catalog: Catalog) -> np.ndarray | None:
    """Unit-normalised embeddings of the default model (NaN rows for items without one)."""
    rows = conn.execute(
        """
        select e.item_id, e.embedding::vector::text
        from pgrecs.item_embeddings e
        join pgrecs.embedding_models m on m.model_id = e.model_id
        where e.tenant_id = %s
          and m.model_id = (select coalesce(
                  (select model_id from pgrecs.embedding_models where is_default),
                  (select min(model_id) from pgrecs.embedding_models)))
        """,
        (tenant,),
    ).fetchall()
    if not rows:
        return None
    dim = len(rows[0][1].strip("[]").split(","))
    out = np.full((catalog.size, dim), np.nan, dtype=np.float32)
    for item_id, text in rows:
        code = catalog.code_of.get(int(item_id))
        if code is not None:
            vec = np.array(text.strip("[]").split(","), dtype=np.float32)
            out[code] = vec / (np.linalg.norm(vec) or 1.0)
    return out


def load_interactions(conn: psycopg.Connection, tenant: str, catalog: Catalog) -> Interactions:
    rows = conn.execute(
        """
        select e.event_id, e.user_id, u.external_id, e.item_id, extract(epoch from e.occurred_at)::float8,
               e.session_id
        from pgrecs.events e
        join pgrecs.users u on u.user_id = e.user_id
        where e.tenant_id = %s
          and e.event_type = any(%s)
        order by e.event_id
        """,
        (tenant, list(POSITIVE_EVENTS)),
    ).fetchall()
    return interactions_from_rows(rows, catalog)


def interactions_from_rows(rows, catalog: Catalog) -> Interactions:
    """rows: (event_id, user_id, user external id, item_id, epoch seconds[, session id]), in load
    order. User codes follow the users' external ids, so they do not depend on load order."""
    rows = list(rows)
    user_code: dict[int, int] = {}
    user_ids: list[int] = []
    user_keys: list[str] = []
    for user_id, user_key in sorted({(r[1], r[2]) for r in rows}, key=lambda x: (str(x[1]), x[0])):
        user_code[user_id] = len(user_ids)
        user_ids.append(user_id)
        user_keys.append(user_key)
    ev, us, it, ts, sess = [], [], [], [], []
    for row in rows:
        event_id, user_id, user_key, item_id, epoch = row[:5]
        code = catalog.code_of.get(int(item_id))
        if code is None:  # inactive item: not part of the rankable catalog
            continue
        ev.append(event_id)
        us.append(user_code[user_id])
        it.append(code)
        ts.append(epoch)
        sess.append(row[5] if len(row) > 5 else None)
    return Interactions(
        event_id=np.array(ev, dtype=np.int64),
        user=np.array(us, dtype=np.int64),
        item=np.array(it, dtype=np.int64),
        ts=np.array(ts, dtype=np.float64),
        user_ids=np.array(user_ids, dtype=np.int64),
        user_keys=np.array(user_keys, dtype=object),
        session=np.array(sess, dtype=object) if any(s is not None for s in sess) else None,
    )
