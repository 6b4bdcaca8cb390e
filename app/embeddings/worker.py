"""The embedding queue worker behind `pgrecs embed`.

Each batch is one transaction: claim up to `batch_size` queue rows of this tenant and model with
`FOR UPDATE SKIP LOCKED` (so several workers share the queue), delete them, and then per item:

* inactive -> leave the semantic neighbour lists (embedding kept for a later reactivation);
* junk text or the merchant's refusal (pgrecs.item_embed_problem) -> pgrecs.not_embeddable, never embedded;
* same text hash as the stored embedding -> nothing to embed (no model call);
* otherwise -> encode, upsert the embedding with the text hash and the truncated flag.

A crash rolls the batch back, so its queue rows come back.

Every maintained model (the default, candidates being shadow-embedded, the standby model kept for
rollback; not retired ones) has its own queue rows, embeddings and semantic neighbour lists; `drain`
and `watch` without a model serve them all, the default first.

The new embeddings' semantic neighbour lists are written in a second, short
transaction right after the first commits: a new item is retrievable as soon as it is embedded, not
after its neighbour lists (the freshness path). The first transaction re-queues those items, and the
second deletes the queue rows again; after a crash in between, the next worker finds them queued,
unchanged, with lists older than their embedding, and refreshes the lists.

Throughput (the model is ~90% of the work, so the database work hides behind it):

* a batch claims `batch_size` (default 512) rows, sorts the texts to embed longest first (as
  sentence-transformers does inside one `encode` call, so padding is the same) and encodes them in
  chunks of `WRITE_CHUNK`; while the model encodes chunk i+1, a writer thread tokenizes chunk i for
  the truncation flags and writes its embeddings on the batch's connection (torch and the
  tokenizer release the GIL, so the two overlap on separate cores);
* the neighbour lists of batch i (the second transaction) are written by a background thread on its
  own connection while batch i+1 is claimed and encoded (`drain` and `watch`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import psycopg
from pgvector import HalfVector

from pgrecs.db import connect
from pgrecs.embeddings.models import ModelSpec, encoder_for, load_spec, maintained_specs

log = logging.getLogger(__name__)
CHANNEL = "pgrecs_embed"
DEFAULT_NEIGHBORS = 50
ENCODE_BATCH = 32
CLAIM_BATCH = 512
WRITE_CHUNK = 128  # texts per encode call within a batch: written while the next chunk encodes


@dataclass
class EmbedStats:
    queued: int = 0
    claimed: int = 0
    embedded: int = 0
    unchanged: int = 0
    not_embeddable: int = 0
    inactive: int = 0
    truncated: int = 0
    model_calls: int = 0
    neighbor_lists: int = 0
    encode_seconds: float = 0.0
    seconds: float = 0.0
    reasons: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)  # model name -> items embedded

    def add(self, other: "EmbedStats") -> None:
        for key in ("claimed", "embedded", "unchanged", "not_embeddable", "inactive", "truncated", "model_calls",
                    "neighbor_lists", "encode_seconds"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        for reason, count in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + count
        for name, count in other.models.items():
            self.models[name] = self.models.get(name, 0) + count

    def as_dict(self) -> dict:
        return asdict(self)


def _tenant(conn) -> str:
    return conn.execute("select pgrecs.current_tenant()").fetchone()[0]


def queue_depth(conn, model_id: int) -> int:
    return conn.execute(
        "select count(*) from pgrecs.embedding_queue where tenant_id = %s and model_id = %s",
        (_tenant(conn), model_id)).fetchone()[0]


def enqueue_stale(conn, spec: ModelSpec) -> int:
    """Queue the tenant's active items with no up-to-date embedding or verdict for this model."""
    return conn.execute("select pgrecs.enqueue_stale_embeddings(%s::smallint)", (spec.model_id,)).fetchone()[0]


def _retrying(conn, fn, *args):
    for attempt in range(5):
        try:
            with conn.transaction():
                return fn(conn, *args)
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            log.info("batch deadlocked with another worker; retrying (%d)", attempt + 1)
            time.sleep(0.05 * (attempt + 1))
    with conn.transaction():
        return fn(conn, *args)


def process_batch(conn, spec: ModelSpec, batch_size: int = CLAIM_BATCH,
                  neighbors: int = DEFAULT_NEIGHBORS, lists: "_ListWriter | None" = None) -> EmbedStats:
    """Claim and process one batch (one transaction, retried on deadlock), then write the new
    embeddings' neighbour lists in a second transaction: here, or handed to `lists` (a background
    writer with its own connection) so the next batch need not wait. Returns what happened."""
    # items whose lists the background writer still has to write are queued again meanwhile: not ours
    skip = lists.outstanding() if lists is not None else []
    stats, pending = _retrying(conn, _process_batch, spec, batch_size, neighbors, skip)
    if pending:
        if lists is None:
            stats.neighbor_lists += _retrying(conn, _refresh_pending, spec, pending, neighbors)
        else:
            lists.submit(pending)
    return stats


class _ListWriter:
    """Writes neighbour lists (the second transaction of each batch) on its own connection in one
    background thread, in order; `close` waits for the last and re-raises a failure."""

    def __init__(self, url: str | None, tenant: str, spec: ModelSpec, neighbors: int):
        self._stack = contextlib.ExitStack()
        self.conn = self._stack.enter_context(connect(url, tenant=tenant))
        self.spec, self.neighbors = spec, neighbors
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="pgrecs-lists")
        self.futures: list = []
        self.written = 0

    def submit(self, item_ids: list[int]) -> None:
        self._collect(wait=False)
        future = self.pool.submit(_retrying, self.conn, _refresh_pending, self.spec, item_ids, self.neighbors)
        future.item_ids = item_ids
        self.futures.append(future)

    def outstanding(self) -> list[int]:
        """Items whose lists are submitted and not written yet."""
        return [i for future in self.futures if not future.done() for i in future.item_ids]

    def _collect(self, wait: bool) -> None:
        keep = []
        for future in self.futures:
            if wait or future.done():
                self.written += future.result()
            else:
                keep.append(future)
        self.futures = keep

    def close(self) -> int:
        try:
            self._collect(wait=True)
        finally:
            self.pool.shutdown(wait=True)
            self._stack.close()
        return self.written


def _refresh_pending(conn, spec: ModelSpec, item_ids: list[int], neighbors: int) -> int:
    """The second transaction: take back the re-queued rows (those no other worker holds) and write
    the lists of those items."""
    mine = [r[0] for r in conn.execute(
        """
        with mine as (
            select item_id from pgrecs.embedding_queue
            where model_id = %s and item_id = any(%s)
            for update skip locked
        )
        delete from pgrecs.embedding_queue as q using mine
        where q.model_id = %s and q.item_id = mine.item_id
        returning q.item_id
        """, (spec.model_id, item_ids, spec.model_id)).fetchall()]
    if mine:
        conn.execute("select pgrecs.refresh_semantic_neighbors(%s, %s, true, %s::smallint)",
                     (mine, neighbors, spec.model_id))
    return len(mine)


def _process_batch(conn, spec: ModelSpec, batch_size: int, neighbors: int,
                   skip: list[int] = ()) -> tuple[EmbedStats, list[int]]:
    stats = EmbedStats()
    tenant = _tenant(conn)
    claimed = [r[0] for r in conn.execute(
        """
        with claimed as (
            select item_id
            from pgrecs.embedding_queue
            where tenant_id = %(tenant)s and model_id = %(model)s
                and not (item_id = any(%(skip)s::bigint[]))
            order by enqueued_at, item_id
            limit %(limit)s
            for update skip locked
        )
        delete from pgrecs.embedding_queue as q
        using claimed as c
        where q.item_id = c.item_id and q.model_id = %(model)s
        returning q.item_id
        """,
        {"tenant": tenant, "model": spec.model_id, "limit": batch_size, "skip": list(skip)}).fetchall()]
    stats.claimed = len(claimed)
    if not claimed:
        return stats, []

    rows = conn.execute(
        """
        select i.item_id, i.active, t.txt, pgrecs.item_embed_problem(t.txt, i.embed_override), pgrecs.item_text_sha256(t.txt),
            e.text_sha256,
            (select count(*) < %s or coalesce(max(nb.computed_at) < e.embedded_at, true)
             from pgrecs.semantic_lists as nb
             where nb.tenant_id = i.tenant_id and nb.model_id = e.model_id and nb.item_id = i.item_id)
        from pgrecs.items as i
        cross join lateral (
            select pgrecs.compose_item_text(i.title, i.description, i.brand, i.category_path, i.attributes) as txt
        ) as t
        left join pgrecs.item_embeddings as e on e.item_id = i.item_id and e.model_id = %s
        where i.item_id = any(%s) and i.tenant_id = %s
        order by i.item_id
        """,
        (neighbors, spec.model_id, claimed, tenant)).fetchall()

    to_embed: list[tuple[int, str, bytes]] = []
    to_remove: list[int] = []
    to_refresh: list[int] = []
    poor: list[tuple[int, str, bytes]] = []
    for item_id, active, text, problem, sha, stored_sha, lists_stale in rows:
        sha = bytes(sha)
        if not active:
            stats.inactive += 1
            to_remove.append(item_id)
        elif problem is not None:
            stats.not_embeddable += 1
            stats.reasons[problem] = stats.reasons.get(problem, 0) + 1
            poor.append((item_id, problem, sha))
            to_remove.append(item_id)
        elif stored_sha is not None and bytes(stored_sha) == sha:
            stats.unchanged += 1
            if lists_stale:
                # reactivated, lost a neighbour to a delete, or a crash came between embedding and lists
                to_refresh.append(item_id)
        else:
            to_embed.append((item_id, text, sha))

    if poor:
        with conn.cursor() as cur:
            cur.executemany(
                """
                insert into pgrecs.not_embeddable (tenant_id, item_id, model_id, reason, text_sha256)
                values (%s, %s, %s, %s, %s)
                on conflict (item_id, model_id) do update
                    set reason = excluded.reason, text_sha256 = excluded.text_sha256, recorded_at = now()
                """,
                [(tenant, item_id, spec.model_id, reason, sha) for item_id, reason, sha in poor])
        conn.execute("delete from pgrecs.item_embeddings where model_id = %s and item_id = any(%s)",
                     (spec.model_id, [p[0] for p in poor]))

    if to_embed:
        encoder = encoder_for(spec)
        # longest first, in chunks: the writer thread flags and writes chunk i while chunk i+1 encodes
        order = sorted(to_embed, key=lambda e: -len(e[1]))
        chunks = [order[i:i + WRITE_CHUNK] for i in range(0, len(order), WRITE_CHUNK)]
        with ThreadPoolExecutor(1, thread_name_prefix="pgrecs-embed-write") as writer:
            written = []
            try:
                for chunk in chunks:
                    texts = [text for _, text, _ in chunk]
                    started = time.perf_counter()
                    vectors = encoder.encode(texts, batch_size=ENCODE_BATCH)
                    stats.encode_seconds += time.perf_counter() - started
                    stats.model_calls += 1
                    written.append(writer.submit(_write_embeddings, conn, tenant, spec, encoder, chunk, vectors))
            finally:
                truncated = [future.result() for future in written]  # waits; re-raises a write failure
        stats.embedded = len(to_embed)
        stats.truncated = sum(truncated)
        conn.execute("delete from pgrecs.not_embeddable where model_id = %s and item_id = any(%s)",
                     (spec.model_id, [e[0] for e in to_embed]))

    pending: list[int] = []
    if neighbors > 0:
        if to_remove:
            conn.execute("select pgrecs.remove_semantic_neighbors(%s, %s, %s::smallint)",
                         (to_remove, neighbors, spec.model_id))
        if to_refresh:  # already retrievable: their lists now
            conn.execute("select pgrecs.refresh_semantic_neighbors(%s, %s, true, %s::smallint)",
                         (to_refresh, neighbors, spec.model_id))
            stats.neighbor_lists += len(to_refresh)
        # the new embeddings' lists come in the next transaction, after this one makes them
        # retrievable; queued again meanwhile, so a crash in between leaves them to the next worker
        pending = [e[0] for e in to_embed]
        if pending:
            conn.execute(
                """
                insert into pgrecs.embedding_queue (tenant_id, item_id, model_id)
                select %s, u.item_id, %s from unnest(%s::bigint[]) as u(item_id)
                on conflict on constraint embedding_queue_pkey do nothing
                """, (tenant, spec.model_id, pending))
    return stats, pending


def _write_embeddings(conn, tenant: str, spec: ModelSpec, encoder, chunk: list[tuple[int, str, bytes]],
                      vectors) -> int:
    """Upsert one encoded chunk with its text hashes and truncation flags; returns how many were truncated."""
    flags = encoder.truncated([text for _, text, _ in chunk])
    with conn.cursor() as cur:
        cur.executemany(
            """
            insert into pgrecs.item_embeddings (tenant_id, item_id, model_id, embedding, text_sha256, truncated)
            values (%s, %s, %s, %s, %s, %s)
            on conflict (item_id, model_id) do update
                set embedding = excluded.embedding, text_sha256 = excluded.text_sha256,
                    truncated = excluded.truncated, embedded_at = now()
            """,
            [(tenant, item_id, spec.model_id, HalfVector(vector), sha, flag)
             for (item_id, _, sha), vector, flag in zip(chunk, vectors, flags)])
    return sum(flags)


def drain(url: str | None, tenant: str, model: str | None = None, *, batch_size: int = CLAIM_BATCH,
          neighbors: int = DEFAULT_NEIGHBORS, progress: bool = True, enqueue: bool = True) -> EmbedStats:
    """Queue stale items (when enqueue) and process the queue until it is empty: of `model`, or of
    every maintained model (default first) when None. `stats.models` names the models drained."""
    started = time.perf_counter()
    total = EmbedStats()
    with connect(url, tenant=tenant) as conn:
        specs = [load_spec(conn, model)] if model is not None else maintained_specs(conn)
        conn.commit()
    for spec in specs:
        stats = _drain_model(url, tenant, spec, batch_size=batch_size, neighbors=neighbors, progress=progress,
                             enqueue=enqueue)
        total.queued += stats.queued
        total.add(stats)
        total.models[spec.name] = stats.embedded
    total.seconds = time.perf_counter() - started
    return total


def _drain_model(url: str | None, tenant: str, spec: ModelSpec, *, batch_size: int, neighbors: int,
                 progress: bool, enqueue: bool) -> EmbedStats:
    from tqdm import tqdm

    total = EmbedStats()
    with connect(url, tenant=tenant) as conn:
        if enqueue:
            total.queued = enqueue_stale(conn, spec)
            conn.commit()
        depth = queue_depth(conn, spec.model_id)
        conn.commit()
        if depth:
            encoder_for(spec)  # fail fast on a missing model, before claiming anything
        lists = _ListWriter(url, tenant, spec, neighbors) if depth and neighbors > 0 else None
        try:
            with tqdm(total=depth, unit="item", desc=f"embed {spec.name}", disable=not progress or depth == 0) as bar:
                while True:
                    stats = process_batch(conn, spec, batch_size, neighbors, lists)
                    if stats.claimed == 0:
                        break
                    total.add(stats)
                    bar.update(stats.claimed)
        finally:
            if lists is not None:
                total.neighbor_lists += lists.close()
    return total


def ensure_filter_indexes(url: str | None, tenant: str, model: str | None = None) -> list[str]:
    """Partial HNSW indexes for the categories between exact-scan size and 10% of the catalog
    (pgrecs.ensure_category_filter_indexes); returns every such index of the model."""
    with connect(url, tenant=tenant) as conn:
        spec = load_spec(conn, model)
        names = conn.execute("select pgrecs.ensure_category_filter_indexes(%s::smallint)",
                             (spec.model_id,)).fetchone()[0]
        conn.commit()
    return names


def watch(url: str | None, tenant: str, model: str | None = None, *, batch_size: int = CLAIM_BATCH,
          neighbors: int = DEFAULT_NEIGHBORS, idle_seconds: float = 5.0, stop_after: float | None = None,
          on_batch=None, stop_event=None) -> EmbedStats:
    """Stay up: drain, then wait for NOTIFY pgrecs_embed (or idle_seconds at most) and drain again.

    Ends after stop_after seconds, or when stop_event (a threading.Event) is set.
    """
    total = EmbedStats()
    deadline = None if stop_after is None else time.monotonic() + stop_after
    with connect(url, tenant=tenant, autocommit=True) as listener, connect(url, tenant=tenant) as conn:
        listener.execute(f"listen {CHANNEL}")
        known: set[int] = set()
        while (deadline is None or time.monotonic() < deadline) and not (stop_event and stop_event.is_set()):
            # re-read each round: a new candidate or a promotion is picked up without a restart
            specs = [load_spec(conn, model)] if model is not None else maintained_specs(conn)
            conn.commit()
            for spec in specs:
                if spec.model_id not in known:
                    encoder_for(spec)
                    total.queued += enqueue_stale(conn, spec)
                    conn.commit()
                    known.add(spec.model_id)
            busy = True
            while busy:
                # one batch per model in turn, the default first: a candidate's initial shadow
                # embedding never holds up the serving model's freshness; each batch's lists are
                # written right after it (no background writer): the batches are small
                busy = False
                for spec in specs:
                    stats = process_batch(conn, spec, batch_size, neighbors)
                    if stats.claimed == 0:
                        continue
                    busy = True
                    stats.models[spec.name] = stats.embedded
                    total.add(stats)
                    if on_batch is not None:
                        on_batch(stats)
            wait = idle_seconds if deadline is None else max(0.0, min(idle_seconds, deadline - time.monotonic()))
            if stop_event is not None:
                wait = min(wait, 0.5)
            # wake on the first notification; drain the rest so one burst costs one wake-up
            ready, _, _ = select.select([listener.fileno()], [], [], wait)
            if ready:
                for _ in listener.notifies(timeout=0):
                    pass
    return total


def _worker_main(url, tenant, model, batch_size, neighbors, threads):  # pragma: no cover - child process
    import torch

    torch.set_num_threads(threads)
    drain(url, tenant, model, batch_size=batch_size, neighbors=neighbors, progress=False, enqueue=False)


def drain_parallel(url: str, tenant: str, model: str | None, *, workers: int, batch_size: int = CLAIM_BATCH,
                   neighbors: int = DEFAULT_NEIGHBORS, progress: bool = True) -> EmbedStats:
    """Several worker processes drain one queue (SKIP LOCKED); the parent shows the progress."""
    import multiprocessing

    from tqdm import tqdm

    started = time.perf_counter()
    total = EmbedStats()
    with connect(url, tenant=tenant) as conn:
        specs = [load_spec(conn, model)] if model is not None else maintained_specs(conn)
        total.queued = sum(enqueue_stale(conn, spec) for spec in specs)
        conn.commit()

        def left() -> int:
            depth = sum(queue_depth(conn, spec.model_id) for spec in specs)
            conn.commit()
            return depth

        depth = left()
        threads = max(1, (os.cpu_count() or 1) // workers)
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_worker_main, args=(url, tenant, model, batch_size, neighbors, threads))
                 for _ in range(workers)]
        for proc in procs:
            proc.start()
        names = ",".join(spec.name for spec in specs)
        with tqdm(total=depth, unit="item", desc=f"embed {names} x{workers}", disable=not progress) as bar:
            done = 0
            while any(p.is_alive() for p in procs):
                time.sleep(0.5)
                remaining = left()
                bar.update(max(0, depth - remaining - done))
                done = max(done, depth - remaining)
        for proc in procs:
            proc.join()
        total.claimed = depth
        failed = [p.exitcode for p in procs if p.exitcode]
        if failed:
            from pgrecs.errors import PgrecsError

            raise PgrecsError(f"{len(failed)} embed worker(s) failed (exit codes {failed}); re-run to resume")
    total.seconds = time.perf_counter() - started
    return total
