"""Stage, validate and merge: one transaction per batch.

For each batch: COPY the parsed text into a temporary staging table, give every bad row one
reason with a few set-based statements (`pg_input_is_valid`, anti-joins), store the rejects
(upserted on tenant, kind, file hash and line, so re-runs do not duplicate them), then merge
the good rows (items upserted only where something changed; users created on first sight;
events inserted once per dedup key) and record the batch in pgrecs.ingest_batches.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from pgrecs.errors import PgrecsError
from pgrecs.ingest.fields import FIELDS, Field
from pgrecs.ingest.readers import Batch, raw_text

STAGE = sql.Identifier("pg_temp", "ingest_stage")
REJECT_STAGE = sql.Identifier("pg_temp", "ingest_reject_stage")


@dataclass(frozen=True)
class Reject:
    line_number: int
    reason: str
    raw: str


@dataclass
class LoadResult:
    """Counts of one load; inserted + updated + unchanged + rejected == records."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejects: list[Reject] = field(default_factory=list)
    # line_number -> internal id (item_id or event_id) of accepted records; filled by ingest_records
    ids: dict[int, int] = field(default_factory=dict)
    batches: int = 0
    elapsed_s: float = 0.0
    source: str = ""
    source_sha256: str = ""

    @property
    def records(self) -> int:
        return self.inserted + self.updated + self.unchanged + self.rejected

    @property
    def rows_per_s(self) -> float:
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def add(self, other: "LoadResult") -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected += other.rejected
        self.rejects.extend(other.rejects)
        self.ids.update(other.ids)
        self.batches += other.batches

    def as_dict(self) -> dict:
        return {
            "records": self.records, "inserted": self.inserted, "updated": self.updated,
            "unchanged": self.unchanged, "rejected": self.rejected, "batches": self.batches,
            "elapsed_s": round(self.elapsed_s, 3), "rows_per_s": round(self.rows_per_s, 1),
        }


# -- validation SQL ------------------------------------------------------------------------------
def _field_reason(f: Field) -> sql.Composable:
    """One CASE per field giving its reason or null; CASE branches run in order, so casts are safe."""
    c = sql.Identifier(f.name)
    name = f.name
    branches: list[sql.Composable] = []

    def when(cond: str, reason: str) -> None:
        branches.append(sql.SQL("when " + cond + " then {}").format(sql.Literal(reason), c=c))

    if f.required:
        missing = f"missing id: {name}" if f.check == "id" else f"missing field: {name}"
        when("{c} is null or btrim({c}) = ''", missing)
    else:
        branches.append(sql.SQL("when {c} is null or btrim({c}) = '' then null").format(c=c))
    when("length({c}) > " + str(int(f.max_len)), f"oversized field: {name}")
    check = f.check
    if check.startswith("numeric") or check in ("integer", "boolean", "float8"):
        when("not pg_input_is_valid(btrim({c}), " + sql.quote(check) + ")", f"bad type: {name}")
        if check.startswith("numeric") or check == "float8":
            when("btrim({c}) ~* '(nan|inf)'", f"bad value: {name}")
        if name == "price":
            when("btrim({c})::numeric < 0", f"bad value: {name}")
    elif check == "currency":
        when("upper(btrim({c})) !~ '^[A-Z]{{3}}$'", f"bad value: {name}")
    elif check == "attributes":
        when("not pg_input_is_valid({c}, 'jsonb')", "bad attributes JSON")
        when("jsonb_typeof({c}::jsonb) <> 'object'", "bad attributes JSON")
    elif check == "category":
        when("not pgrecs.ingest_category_path_ok({c})", "bad category_path")
    elif check == "event_type":
        when("lower(btrim({c})) <> all(array(select t.event_type from pgrecs.event_types as t))", "unknown event type")
    elif check == "time":
        when("pgrecs.ingest_time({c}) is null", "unparseable timestamp")
    return sql.SQL("case {} end").format(sql.SQL(" ").join(branches))


def _validate_sql(fields: list[Field]) -> sql.Composed:
    reason = sql.SQL("coalesce({})").format(sql.SQL(", ").join([_field_reason(f) for f in fields] + [sql.NULL]))
    return sql.SQL("update {stage} set pre_reason = {reason} where pre_reason is null and {reason} is not null").format(
        stage=STAGE, reason=reason)


def _nz(col: str) -> sql.Composable:
    """A staging column as a value: blank text is null."""
    return sql.SQL("nullif(btrim({}), '')").format(sql.Identifier(col))


_ITEM_VALUE = {
    "title": lambda: sql.SQL("nullif({}, '')").format(sql.Identifier("title")),
    "description": lambda: sql.SQL("nullif({}, '')").format(sql.Identifier("description")),
    "brand": lambda: _nz("brand"),
    "category_path": lambda: sql.SQL("pgrecs.ingest_category_path({})").format(sql.Identifier("category_path")),
    "attributes": lambda: sql.SQL("coalesce({}::jsonb, '{{}}'::jsonb)").format(_nz("attributes")),
    "price": lambda: sql.SQL("{}::numeric(14, 4)").format(_nz("price")),
    "currency": lambda: sql.SQL("upper({})").format(_nz("currency")),
    "stock": lambda: sql.SQL("{}::integer").format(_nz("stock")),
    "margin": lambda: sql.SQL("{}::numeric(9, 4)").format(_nz("margin")),
    "image_url": lambda: _nz("image_url"),
    "active": lambda: sql.SQL("coalesce({}::boolean, true)").format(_nz("active")),
}


class Loader:
    """Runs batches of one kind into one tenant over one connection."""

    def __init__(self, conn: psycopg.Connection, kind: str, *, tenant: str, source: str, source_sha256: str,
                 columns: list[str]):
        if kind not in FIELDS:
            raise PgrecsError(f"unknown kind {kind!r} (items or events)")
        self.conn = conn
        self.kind = kind
        self.tenant = tenant
        self.source = source
        self.sha = source_sha256
        self.columns = columns
        by_name = {f.name: f for f in FIELDS[kind]}
        staged = set(columns)
        # Required fields are validated even when absent (they are then null: "missing ...").
        self.fields = [f for f in FIELDS[kind] if f.name in staged or f.required]
        self.stage_columns = columns + [f.name for f in self.fields if f.name not in staged]
        self._validate = _validate_sql([by_name[f.name] for f in self.fields])

    # -- setup -----------------------------------------------------------------------------
    @staticmethod
    def check_schema(conn: psycopg.Connection, tenant: str) -> None:
        row = conn.execute(
            "select to_regclass('pgrecs.ingest_batches') is not null,"
            " to_regprocedure('pgrecs.ingest_time(text)') is not null").fetchone()
        if not row[0] or not row[1]:
            raise PgrecsError("the database schema is not ready: run `pgrecs migrate` first")
        if conn.execute("select 1 from pgrecs.tenants where tenant_id = %s", (tenant,)).fetchone() is None:
            raise PgrecsError(f"unknown tenant {tenant!r}")

    # -- one batch -------------------------------------------------------------------------
    def run(self, batch: Batch, *, collect_rejects: bool = False, collect_ids: bool = False) -> LoadResult:
        conn = self.conn
        result = LoadResult(batches=1)
        with conn.transaction(), conn.cursor() as cur:
            old_tz = cur.execute("select current_setting('timezone')").fetchone()[0]
            cur.execute("select set_config('timezone', 'UTC', true)")
            batch_id = cur.execute(
                "insert into pgrecs.ingest_batches (tenant_id, kind, source, source_sha256, first_line, last_line)"
                " values (%s, %s, %s, %s, %s, %s) returning batch_id",
                (self.tenant, self.kind, self.source, self.sha, batch.first_line, batch.last_line)).fetchone()[0]
            self._stage(cur, batch)
            cur.execute(self._validate)
            if self.kind == "items":
                cur.execute(sql.SQL(
                    "update {stage} as s set pre_reason = 'duplicate id: external_id' from ("
                    " select line_number, row_number() over (partition by btrim(external_id) order by line_number desc) as rn"
                    " from {stage} where pre_reason is null) as d"
                    " where d.line_number = s.line_number and d.rn > 1").format(stage=STAGE))
            else:
                cur.execute(sql.SQL(
                    "update {stage} as s set pre_reason = 'unknown item'"
                    " where s.pre_reason is null and not exists ("
                    " select 1 from pgrecs.items as i where i.tenant_id = %s and i.external_id = btrim(s.item_id))"
                ).format(stage=STAGE), (self.tenant,))
            rejects = cur.execute(sql.SQL(
                "select line_number, pre_reason from {} where pre_reason is not null order by line_number").format(STAGE)).fetchall()
            if rejects:
                self._store_rejects(cur, batch_id, batch, rejects)
                if collect_rejects:
                    result.rejects = [Reject(line, reason, raw_text(batch.raws.get(line, ""))) for line, reason in rejects]
            result.rejected = len(rejects)
            valid = len(batch) - len(rejects)
            if valid:
                if self.kind == "items":
                    result.inserted, result.updated = self._merge_items(cur, batch_id, batch.present)
                    result.unchanged = valid - result.inserted - result.updated
                else:
                    result.inserted = self._merge_events(cur, batch_id)
                    result.unchanged = valid - result.inserted
                if collect_ids:
                    result.ids = self._ids(cur)
            cur.execute(
                "update pgrecs.ingest_batches set inserted = %s, updated = %s, unchanged = %s, rejected = %s,"
                " finished_at = clock_timestamp() where batch_id = %s",
                (result.inserted, result.updated, result.unchanged, result.rejected, batch_id))
            cur.execute("select set_config('timezone', %s, true)", (old_tz,))
        return result

    def _stage(self, cur: psycopg.Cursor, batch: Batch) -> None:
        cols = [sql.SQL("{} text").format(sql.Identifier(c)) for c in self.stage_columns]
        cur.execute(sql.SQL("drop table if exists {}").format(STAGE))
        cur.execute(sql.SQL(
            "create temporary table {} (line_number integer not null, pre_reason text, {}) on commit drop"
        ).format(STAGE, sql.SQL(", ").join(cols)))
        copy_sql = sql.SQL("copy {} ({}) from stdin").format(
            STAGE, sql.SQL(", ").join(map(sql.Identifier, ["line_number", "pre_reason", *self.columns])))
        with cur.copy(copy_sql) as copy:
            write = copy.write_row
            for row in batch.rows:
                write(row)
        # Row count and the join keys' statistics are what the merge plans need; a full analyze costs more.
        keys = ["external_id"] if self.kind == "items" else ["user_id", "item_id"]
        cur.execute(sql.SQL("analyze {} ({})").format(STAGE, sql.SQL(", ").join(map(sql.Identifier, keys))))

    def _store_rejects(self, cur: psycopg.Cursor, batch_id: int, batch: Batch, rejects: list[tuple[int, str]]) -> None:
        cur.execute(sql.SQL("drop table if exists {}").format(REJECT_STAGE))
        cur.execute(sql.SQL(
            "create temporary table {} (line_number integer, raw text, reason text) on commit drop").format(REJECT_STAGE))
        with cur.copy(sql.SQL("copy {} (line_number, raw, reason) from stdin").format(REJECT_STAGE)) as copy:
            for line, reason in rejects:
                copy.write_row((line, raw_text(batch.raws.get(line, "")), reason))
        cur.execute(sql.SQL(
            "insert into pgrecs.ingest_rejects as r (tenant_id, batch_id, kind, source, source_sha256, line_number, raw, reason)"
            " select %s, %s, %s, %s, %s, line_number, raw, reason from {}"
            " on conflict (tenant_id, kind, source_sha256, line_number) do update"
            " set batch_id = excluded.batch_id, source = excluded.source, raw = excluded.raw,"
            " reason = excluded.reason, created_at = now()").format(REJECT_STAGE),
            (self.tenant, batch_id, self.kind, self.source, self.sha))

    def _merge_items(self, cur: psycopg.Cursor, batch_id: int, present: set[str]) -> tuple[int, int]:
        cols = [f.name for f in FIELDS["items"] if f.name != "external_id" and f.name in present and f.name in self.stage_columns]
        ids = [sql.Identifier(c) for c in cols]
        values = [_ITEM_VALUE[c]() for c in cols]
        target = sql.SQL(", ").join([sql.Identifier("tenant_id"), sql.Identifier("external_id"), *ids])
        select = sql.SQL(", ").join([sql.Placeholder("tenant"), sql.SQL("btrim(external_id)"), *values])
        if cols:
            sets = sql.SQL(", ").join([sql.SQL("{0} = excluded.{0}").format(i) for i in ids] + [sql.SQL("updated_at = now()")])
            mine = sql.SQL(", ").join([sql.SQL("it.{}").format(i) for i in ids])
            theirs = sql.SQL(", ").join([sql.SQL("excluded.{}").format(i) for i in ids])
            conflict = sql.SQL("do update set {} where ({}, null) is distinct from ({}, null)").format(sets, mine, theirs)
        else:
            conflict = sql.SQL("do nothing")
        row = cur.execute(sql.SQL(
            "with up as ("
            " insert into pgrecs.items as it ({target}) select {select} from {stage} where pre_reason is null"
            " on conflict (tenant_id, external_id) {conflict}"
            " returning (xmax = 0) as inserted)"
            " select count(*) filter (where inserted), count(*) filter (where not inserted) from up"
        ).format(target=target, select=select, stage=STAGE, conflict=conflict), {"tenant": self.tenant}).fetchone()
        return int(row[0]), int(row[1])

    def _merge_events(self, cur: psycopg.Cursor, batch_id: int) -> int:
        params = {"tenant": self.tenant, "batch": batch_id}
        cur.execute(sql.SQL(
            "insert into pgrecs.users (tenant_id, external_id)"
            " select distinct %(tenant)s, btrim(s.user_id) from {stage} as s"
            " where s.pre_reason is null and not exists ("
            "  select 1 from pgrecs.users as u where u.tenant_id = %(tenant)s and u.external_id = btrim(s.user_id))"
            " order by 2"  # one lock order for concurrent batches: no deadlocks between workers
            " on conflict (tenant_id, external_id) do nothing").format(stage=STAGE), params)
        has = set(self.stage_columns)
        value = sql.SQL("nullif(btrim(s.value), '')::float8") if "value" in has else sql.NULL
        session = sql.SQL("nullif(s.session_id, '')") if "session_id" in has else sql.NULL
        request = sql.SQL("nullif(s.request_id, '')") if "request_id" in has else sql.NULL
        event_id = sql.SQL("s.event_id") if "event_id" in has else sql.NULL
        row = cur.execute(sql.SQL(
            "with ins as ("
            " insert into pgrecs.events (tenant_id, user_id, item_id, event_type, value, occurred_at,"
            "  session_id, request_id, dedup_key, batch_id)"
            " select %(tenant)s, u.user_id, i.item_id, v.event_type, v.value, v.occurred_at, v.session_id, v.request_id,"
            "  pgrecs.ingest_event_key(v.user_ext, v.item_ext, v.event_type, v.occurred_at, v.value, v.session_id, v.event_id),"
            "  %(batch)s"
            # offset 0 keeps the subquery from being flattened, so each value is parsed once per row
            " from (select btrim(s.user_id) as user_ext, btrim(s.item_id) as item_ext,"
            "  lower(btrim(s.event_type)) as event_type, {value} as value,"
            "  pgrecs.ingest_time(s.occurred_at) as occurred_at, {session} as session_id, {request} as request_id,"
            "  {event_id} as event_id"
            "  from {stage} as s where s.pre_reason is null offset 0) as v"
            " join pgrecs.users as u on u.tenant_id = %(tenant)s and u.external_id = v.user_ext"
            " join pgrecs.items as i on i.tenant_id = %(tenant)s and i.external_id = v.item_ext"
            " on conflict (tenant_id, dedup_key) do nothing"
            " returning 1)"
            " select count(*) from ins"
        ).format(stage=STAGE, value=value, session=session, request=request, event_id=event_id), params).fetchone()
        return int(row[0])

    def _ids(self, cur: psycopg.Cursor) -> dict[int, int]:
        if self.kind == "items":
            rows = cur.execute(sql.SQL(
                "select s.line_number, i.item_id from {stage} as s join pgrecs.items as i"
                " on i.tenant_id = %s and i.external_id = btrim(s.external_id) where s.pre_reason is null").format(stage=STAGE),
                (self.tenant,)).fetchall()
        else:
            has = set(self.stage_columns)
            value = sql.SQL("nullif(btrim(s.value), '')::float8") if "value" in has else sql.NULL
            session = sql.SQL("nullif(s.session_id, '')") if "session_id" in has else sql.NULL
            event_id = sql.SQL("s.event_id") if "event_id" in has else sql.NULL
            rows = cur.execute(sql.SQL(
                "select s.line_number, e.event_id from {stage} as s join pgrecs.events as e"
                " on e.tenant_id = %s and e.dedup_key = pgrecs.ingest_event_key(btrim(s.user_id), btrim(s.item_id),"
                " lower(btrim(s.event_type)), pgrecs.ingest_time(s.occurred_at), {value}, {session}, {event_id})"
                " where s.pre_reason is null").format(stage=STAGE, value=value, session=session, event_id=event_id),
                (self.tenant,)).fetchall()
        return dict(rows)


def records_sha256(records: list) -> str:
    return hashlib.sha256(json.dumps(records, sort_keys=True, default=str).encode("utf-8", "surrogateescape")).hexdigest()


def run_batches(loaders: list[Loader], batches: Iterable[Batch], *, progress: Callable[[Batch], None] | None = None,
                collect_rejects: bool = False, collect_ids: bool = False) -> LoadResult:
    """Run batches on one or more loaders (one connection each), parsing the next batch meanwhile.

    Each batch is its own transaction on whichever connection is free. A failed batch stops the
    load; batches already committed stay (re-running the file completes it without duplicates).
    Only use several loaders where batch order does not matter (events); items keep file order.
    """
    first = loaders[0]
    total = LoadResult(source=first.source, source_sha256=first.sha)
    started = time.perf_counter()
    idle: queue.Queue[Loader] = queue.Queue()
    for loader in loaders:
        idle.put(loader)
    failures: list[BaseException] = []

    def attempt(loader: Loader, batch: Batch) -> LoadResult:
        try:
            for attempt in range(3):
                try:
                    return loader.run(batch, collect_rejects=collect_rejects, collect_ids=collect_ids)
                except psycopg.errors.DeadlockDetected:
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")
        except psycopg.OperationalError as exc:
            raise PgrecsError(f"lost the database at lines {batch.first_line}-{batch.last_line} "
                              f"(committed batches stay; re-run to finish): {_first_line(exc)}") from exc
        except psycopg.Error as exc:
            raise PgrecsError(f"batch at lines {batch.first_line}-{batch.last_line} failed and was rolled back "
                              f"(committed batches stay; re-run to finish): {_first_line(exc)}") from exc

    def job(loader: Loader, batch: Batch) -> LoadResult:
        try:
            return attempt(loader, batch)
        except BaseException as exc:
            failures.append(exc)  # recorded before the loader is free again, so no later batch starts
            raise
        finally:
            idle.put(loader)

    def done(future, batch: Batch) -> None:
        if future.exception() is not None:
            return
        with lock:
            total.add(future.result())
        if progress:
            progress(batch)

    lock = threading.Lock()
    with ThreadPoolExecutor(max_workers=len(loaders), thread_name_prefix="pgrecs-load") as pool:
        futures = []
        for batch in batches:
            loader = idle.get()
            if failures:
                idle.put(loader)
                break
            future = pool.submit(job, loader, batch)
            future.add_done_callback(lambda f, b=batch: done(f, b))
            futures.append(future)
        wait(futures)
    if failures:
        raise failures[0]
    total.elapsed_s = time.perf_counter() - started
    return total


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
