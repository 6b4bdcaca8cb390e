"""Fitting the EASE signal per tenant: dense up to a size, by blocks above it, guarded and recorded.

One signal, two solvers. A tenant whose model (items with interactions, plus the embedded ones
when side information is on) has at most `max_dense_items` items gets dense EASE (ease.py);
a larger one gets EASE by blocks (ease_blocks.py), which solves the same per-item regressions
over blocks of related items and equals dense EASE where a block holds the catalog. Both
publish the lists of signal 'ease', so placements, reasons and evaluation need nothing new.

Schedule: dense EASE runs inside `pgrecs refresh` (on full refreshes, or with --ease). A fit by
blocks takes minutes at catalog scale, so a plain full refresh leaves such a tenant's lists as
they are (with a note) and `pgrecs refresh --cf` fits it on its own schedule: no dbt build, the
interaction matrix of the last refresh, one publishing transaction (pgrecs.replace_signal_lists:
readers see the old lists or the new ones). `--ease` fits every tenant inline.

Memory guard: before anything is allocated, each fit's peak is estimated from counts SQL returns
(ease.dense_bytes, ease_blocks.estimate_bytes) and a fit above the limit (--ease-memory-limit,
else the memory available now) is refused with one line; the tenant keeps its lists.

Lineage: every attempted fit is a row of pgrecs.model_fits (when, the events high-water mark, the
matrix's counts, method, parameters, library versions, seconds, peak RSS, the estimate), written
in the transaction that publishes its lists; `pgrecs models fits` lists them.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata

import numpy as np
from scipy import sparse

from pgrecs.db import connect
from pgrecs.signals import ease, ease_blocks
from pgrecs.signals.cooccurrence import _read_columns
from pgrecs.signals.ties import read_tie_keys

METHODS = ("auto", "dense", "blocks")


@dataclass(frozen=True)
class EaseSettings:
    lam: float = ease.DEFAULT_LAMBDA
    semantic_weight: float = ease.DEFAULT_SEMANTIC_WEIGHT
    top_n: int = 50
    max_dense_items: int = ease.DEFAULT_MAX_ITEMS
    block_size: int = ease_blocks.DEFAULT_BLOCK_SIZE
    halo_size: int = ease_blocks.DEFAULT_HALO_SIZE
    memory_limit_bytes: int | None = None  # None: the memory available when the fit starts
    method: str = "auto"  # auto: dense up to max_dense_items, blocks above

    def method_for(self, n_items: int) -> str:
        if self.method != "auto":
            return self.method
        return "dense" if n_items <= self.max_dense_items else "blocks"

    def parameters(self, method: str) -> dict:
        out = {"lambda": self.lam, "semantic_weight": self.semantic_weight, "top_n": self.top_n}
        if method == "blocks":
            out |= {"block_size": self.block_size, "halo_size": self.halo_size,
                    "graph_neighbors": ease_blocks.DEFAULT_GRAPH_NEIGHBORS}
        return out

    def block_params(self) -> ease_blocks.BlockParams:
        return ease_blocks.BlockParams(lam=self.lam, side_weight=self.semantic_weight, block_size=self.block_size,
                                       halo_size=self.halo_size, top_n=self.top_n)


@dataclass
class Sizes:
    items: int
    users: int
    interactions: int
    pair_work: int
    embedded: int
    dims: int


@dataclass
class FitRecord:
    tenant_id: str
    method: str
    status: str
    started_at: dt.datetime
    last_event_id: int | None
    users: int
    items: int
    interactions: int
    embedded_items: int
    parameters: dict
    library_versions: dict
    estimated_bytes: int
    memory_limit_bytes: int
    fit_seconds: float | None = None
    peak_rss_bytes: int | None = None
    neighbor_rows: int | None = None
    note: str | None = None


@dataclass
class CfReport:
    """What `pgrecs refresh --cf` did."""
    fits: list[FitRecord] = field(default_factory=list)
    published: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def available_memory() -> int:
    """MemAvailable from /proc/meminfo (what can be allocated without swapping), in bytes."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


class PeakMemory:
    """The process's resident memory high-water mark over a block of code: Linux resets it when
    5 is written to /proc/self/clear_refs (VmHWM then restarts from the current RSS); elsewhere
    ru_maxrss, the high-water mark since the process started."""

    def __enter__(self) -> PeakMemory:
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
        except OSError:
            pass
        return self

    def __exit__(self, *exc) -> None:
        self.bytes = _vm_hwm()


def _vm_hwm() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def library_versions(method: str) -> dict:
    names = ["pgrecs", "numpy", "scipy"] + (["pymetis"] if method == "blocks" else [])
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def estimate_bytes(method: str, sizes: Sizes, settings: EaseSettings) -> int:
    side_dims = sizes.dims if settings.semantic_weight > 0 else 0
    if method == "dense":
        return ease.dense_bytes(sizes.items, sizes.interactions, side_dims)
    return ease_blocks.estimate_bytes(sizes.items, sizes.interactions, sizes.pair_work, side_dims,
                                      settings.block_params())


# the default model's embeddings of the tenant's active items: EASE's side information
EMBEDDINGS_FROM = """
    from pgrecs.item_embeddings as e
    join pgrecs.items as i on i.item_id = e.item_id and i.active
    where e.model_id = (select m.model_id from pgrecs.embedding_models as m where m.is_default)"""


def tenant_sizes(conn, semantic_weight: float) -> dict[str, Sizes]:
    """Per tenant with interactions, what the memory guard needs, in one statement: the model's
    items (with interactions, plus the embedded ones when side information is on), users,
    interactions, the Gram terms (sum of squared user counts), embedded items and dimensions."""
    rows = conn.execute(
        "with interacted as (select distinct tenant_id, item_id from recs_intermediate.int_user_items_aggregated),"
        " embedded as (select e.tenant_id, e.item_id" + EMBEDDINGS_FROM + " and %(side)s),"
        " model_items as (select u.tenant_id, count(*) as items from (select * from interacted union"
        "  select * from embedded where tenant_id in (select tenant_id from interacted)) as u group by u.tenant_id),"
        " per_user as (select tenant_id, user_id, count(*)::bigint as n"
        "  from recs_intermediate.int_user_items_aggregated group by tenant_id, user_id),"
        " activity as (select tenant_id, count(*) as users, sum(n) as interactions, sum(n * n) as pair_work"
        "  from per_user group by tenant_id),"
        " embedded_counts as (select tenant_id, count(*) as embedded from embedded group by tenant_id)"
        " select m.tenant_id, m.items, a.users, a.interactions, a.pair_work, coalesce(c.embedded, 0),"
        "  coalesce((select d.dimensions from pgrecs.embedding_models as d where d.is_default), 0)"
        " from model_items as m join activity as a using (tenant_id)"
        " left join embedded_counts as c using (tenant_id) order by m.tenant_id",
        {"side": semantic_weight > 0}).fetchall()
    return {t: Sizes(int(items), int(users), int(inter), int(work), int(emb), int(dims))
            for t, items, users, inter, work, emb, dims in rows}


def _side_information(conn, tenant: str) -> tuple[np.ndarray, np.ndarray]:
    """(item ids, embeddings) of the default model for the tenant's active items."""
    rows = conn.execute("select e.item_id, e.embedding::vector::real[]" + EMBEDDINGS_FROM
                        + " and e.tenant_id = %s order by e.item_id", (tenant,)).fetchall()
    if not rows:
        return np.array([], dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.float32)


def _fit_blocks(conn, tenant: str, users: np.ndarray, items: np.ndarray, settings: EaseSettings,
                embedded_ids, embeddings) -> ease.EaseNeighbors:
    """EASE by blocks on the tenant's pairs; with side information, the text-similar pairs of
    the published semantic lists (cosine, times the side-information weight) join the partition
    graph, so an item without interactions lands in the block of the items described alike."""
    use_side = embeddings is not None and len(embeddings) > 0 and settings.semantic_weight > 0
    model_items = np.unique(np.concatenate([items, embedded_ids]) if use_side else items)
    _, user_index = np.unique(users, return_inverse=True)
    x = sparse.csr_matrix((np.ones(len(items), dtype=np.float32), (user_index, np.searchsorted(model_items, items))),
                          shape=(int(user_index.max()) + 1 if len(user_index) else 0, len(model_items)))
    x.sum_duplicates()
    x.data[:] = 1.0
    side = side_edges = None
    if use_side:
        side = np.zeros((len(model_items), embeddings.shape[1]), dtype=np.float32)
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        side[np.searchsorted(model_items, embedded_ids)] = embeddings / np.where(norms > 0, norms, 1.0)
        anchor, neighbor, cosine = _read_columns(
            conn, "select n.item_id, n.neighbor_item_id, n.score::float8 from pgrecs.item_neighbors as n"
            " where n.tenant_id = %s and n.signal = 'semantic' and n.score > 0", (tenant,), ("int8", "int8", "float8"))
        a, b = np.searchsorted(model_items, anchor), np.searchsorted(model_items, neighbor)
        known = (a < len(model_items)) & (b < len(model_items))
        known[known] &= (model_items[a[known]] == anchor[known]) & (model_items[b[known]] == neighbor[known])
        side_edges = sparse.csr_matrix((settings.semantic_weight * cosine[known], (a[known], b[known])),
                                       shape=(len(model_items), len(model_items)))
    return ease_blocks.fit(x, model_items, settings.block_params(), read_tie_keys(conn, model_items),
                           side=side, side_edges=side_edges)


def compute_ease(url: str, settings: EaseSettings, notes: list[str], tenants: list[str] | None = None,
                 last_event_ids: dict[str, int] | None = None, fits: list[FitRecord] | None = None,
                 defer_blocks: bool = False) -> dict[str, ease.EaseNeighbors]:
    """EASE neighbours per tenant (all, or the given ones) from recs_intermediate.int_user_items_aggregated.
    Each attempted fit is appended to `fits` (published by the caller's transaction, refused
    ones too); defer_blocks: tenants that need the block solver are left to `pgrecs refresh --cf`."""
    out: dict[str, ease.EaseNeighbors] = {}
    fits = fits if fits is not None else []
    with connect(url) as conn:
        sizes = tenant_sizes(conn, settings.semantic_weight)
        for tenant, size in sizes.items():
            if tenants is not None and tenant not in tenants:
                continue
            method = settings.method_for(size.items)
            if defer_blocks and method == "blocks":
                notes.append(f"EASE for tenant {tenant} ({size.items:,} items, above the dense limit of "
                             f"{settings.max_dense_items:,}) is fitted by blocks on its own schedule: "
                             "run `pgrecs refresh --cf`; its published lists are kept")
                continue
            estimate = estimate_bytes(method, size, settings)
            limit = settings.memory_limit_bytes or available_memory()
            record = FitRecord(tenant, method, "refused", dt.datetime.now(dt.timezone.utc),
                               (last_event_ids or {}).get(tenant), size.users, size.items, size.interactions,
                               size.embedded, settings.parameters(method), library_versions(method), estimate, limit)
            if estimate > limit:
                record.note = (f"EASE ({method}) for tenant {tenant} needs about {estimate / 2**30:.1f} GiB "
                               f"({size.items:,} items, {size.interactions:,} interactions) and the limit is "
                               f"{limit / 2**30:.1f} GiB: fit refused, published lists kept"
                               + (" (lower --ease-block-size / --ease-halo-size or raise --ease-memory-limit)"
                                  if method == "blocks" else " (lower --ease-max-items to fit it by blocks)"))
                notes.append(record.note)
                fits.append(record)
                continue
            with PeakMemory() as peak:
                started = time.perf_counter()
                embedded_ids, embeddings = (_side_information(conn, tenant) if settings.semantic_weight > 0
                                            else (None, None))
                users, items = _read_columns(
                    conn, "select user_id, item_id from recs_intermediate.int_user_items_aggregated where tenant_id = %s",
                    (tenant,), ("int8", "int8"))
                if method == "dense":
                    nb = ease.ease_from_pairs(users, items, lam=settings.lam, top_n=settings.top_n,
                                              embedded_item_ids=embedded_ids, embeddings=embeddings,
                                              semantic_weight=settings.semantic_weight,
                                              tie_keys_of=lambda ids: read_tie_keys(conn, ids))
                else:
                    nb = _fit_blocks(conn, tenant, users, items, settings, embedded_ids, embeddings)
                record.fit_seconds = time.perf_counter() - started
            record.peak_rss_bytes = peak.bytes
            record.status, record.neighbor_rows = "published", len(nb.item_ids)
            fits.append(record)
            out[tenant] = nb
    return out


def record_fits(conn, fits: list[FitRecord]) -> None:
    """The lineage rows, in the caller's (publishing) transaction."""
    columns = [f for f in FitRecord.__dataclass_fields__]
    for fit in fits:
        row = asdict(fit)
        row["parameters"] = json.dumps(row["parameters"])
        row["library_versions"] = json.dumps(row["library_versions"])
        conn.execute(
            f"insert into pgrecs.model_fits (signal, {', '.join(columns)}) values ('ease', "
            + ", ".join(f"%({c})s" for c in columns) + ")", row)
