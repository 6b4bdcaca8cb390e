"""Stage, validate and merge: one transaction per batch.

For each batch: COPY the parsed text into a temporary staging table; rewrite prices that are not
plain numbers into plain ones (pgrecs.ingest_price_parts); give every row that cannot be loaded
one reason, and every optional field that does not pass a warning, with a few set-based
statements (`pg_input_is_valid`, anti-joins); mark the earlier lines of an id repeated in the
load as superseded; store rejects and warnings (upserted on tenant, kind, file hash and line,
so re-runs do not duplicate them); then merge the good rows (items upserted only where
something changed, a warned field left empty on a new item and as stored on an existing one;
users created on first sight; events inserted once per dedup key) and record the batch in
pgrecs.ingest_batches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from pgrecs.errors import PgrecsError
from pgrecs.ingest.fields import FIELDS, Field
from pgrecs.ingest.readers import Batch, raw_text

STAGE = sql.Identifier("pg_temp", "ingest_stage")
REJECT_STAGE = sql.Identifier("pg_temp", "ingest_reject_stage")
ITEM_LINES = sql.Identifier("pg_temp", "ingest_item_lines")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reject:
    line_number: int
    reason: str
    raw: str


@dataclass(frozen=True)
class FieldWarning:
    line_number: int
    field: str
    reason: str
    value: str | None


@dataclass
class LoadResult:
    """Counts of one load; inserted + updated + unchanged + superseded + duplicates + rejected == records.

    superseded: item lines replaced by a later line for the same external_id in this load.
    duplicates: event lines repeating an event this load already stored.
    warnings: fields left empty in loaded records (not a count of records).
    """

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    superseded: int = 0
    duplicates: int = 0
    rejected: int = 0
    warned: int = 0
    rejects: list[Reject] = field(default_factory=list)
    warnings: list[FieldWarning] = field(default_factory=list)
    # line_number -> internal id (item_id or event_id) of accepted records; filled by ingest_records
    ids: dict[int, int] = field(default_factory=dict)
    batches: int = 0
    elapsed_s: float = 0.0
    source: str = ""
    source_sha256: str = ""

    @property
    def records(self) -> int:
        return self.inserted + self.updated + self.unchanged + self.superseded + self.duplicates + self.rejected

    @property
    def rows_per_s(self) -> float:
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def add(self, other: "LoadResult") -> None:
        for name in ("inserted", "updated", "unchanged", "superseded", "duplicates", "rejected", "warned", "batches"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejects.extend(other.rejects)
        self.warnings.extend(other.warnings)
        self.ids.update(other.ids)

    def as_dict(self) -> dict:
        return {
            "records": self.records, "inserted": self.inserted, "updated": self.updated,
            "unchanged": self.unchanged, "superseded": self.superseded, "duplicates": self.duplicates,
            "rejected": self.rejected, "warnings": self.warned, "batches": self.batches,
            "elapsed_s": round(self.elapsed_s, 3), "rows_per_s": round(self.rows_per_s, 1),
        }


# -- validation SQL ------------------------------------------------------------------------------
def _field_checks(f: Field) -> list[tuple[str, str]]:
    """(condition on {c}, reason) pairs in order, for a non-blank value; earlier ones guard later casts."""
    name = f.name
    checks = [("length({c}) > " + str(int(f.max_len)), f"oversized field: {name}")]
    check = f.check
    if check.startswith("numeric") or check in ("integer", "boolean", "float8"):
        checks.append(("not pg_input_is_valid(btrim({c}), " + sql.quote(check) + ")", f"bad type: {name}"))
        if check.startswith("numeric") or check == "float8":
            checks.append(("btrim({c}) ~* '(nan|inf)'", f"bad type: {name}"))
        if name in ("price", "stock"):
            checks.append(("btrim({c})::numeric < 0", f"bad value: {name}"))
    elif check == "currency":
        checks.append(("upper(btrim({c})) !~ '^[A-Z]{{3}}$'", f"bad value: {name}"))
    elif check == "attributes":
        checks.append(("not pg_input_is_valid({c}, 'jsonb')", f"bad JSON: {name}"))
        checks.append(("jsonb_typeof({c}::jsonb) <> 'object'", f"bad JSON: {name}"))
    elif check == "category":
        checks.append(("not pgrecs.ingest_category_path_ok({c})", f"bad category_path: {name}"))
    elif check == "url":
        checks.append(("pgrecs.ingest_image_url({c}) is null", f"bad URL: {name}"))
    elif check == "event_type":
        checks.append(("lower(btrim({c})) <> all(array(select t.event_type from pgrecs.event_types as t))",
                       "unknown event type"))
    elif check == "time":
        checks.append(("pgrecs.ingest_time({c}) is null", "unparseable timestamp"))
    return checks


def _field_case(f: Field, *, label: Callable[[str], str]) -> sql.Composable:
    """One CASE per field giving its reason (through `label`) or null; branches run in order, so casts are safe."""
    c = sql.Identifier(f.name)
    branches: list[sql.Composable] = []
    if f.required:
        missing = f"missing id: {f.name}" if f.check == "id" else f"missing field: {f.name}"
        branches.append(sql.SQL("when {c} is null or btrim({c}) = '' then {r}").format(c=c, r=sql.Literal(missing)))
    else:
        branches.append(sql.SQL("when {c} is null or btrim({c}) = '' then null").format(c=c))
    for cond, reason in _field_checks(f):
        branches.append(sql.SQL("when " + cond + " then {r}").format(c=c, r=sql.Literal(label(reason))))
    return sql.SQL("case {} end").format(sql.SQL(" ").join(branches))


def _reject_sql(fields: list[Field]) -> sql.Composed:
    cases = [_field_case(f, label=lambda r: r) for f in fields if f.on_error == "reject"]
    reason = sql.SQL("coalesce({})").format(sql.SQL(", ").join(cases + [sql.NULL]))
    return sql.SQL("update {stage} set pre_reason = {reason} where pre_reason is null and {reason} is not null").format(
        stage=STAGE, reason=reason)


def _warning_sql(fields: list[Field]) -> sql.Composed | None:
    """Sets `warned` to {field: reason} for the rows whose optional fields do not pass."""
    warned = [f for f in fields if f.on_error == "warn"]
    if not warned:
        return None
    cases = [_field_case(f, label=lambda r: r.split(":")[0]) for f in warned]
    pairs = sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(f.name), case) for f, case in zip(warned, cases))
    return sql.SQL(
        "update {stage} set warned = jsonb_strip_nulls(jsonb_build_object({pairs}))"
        " where pre_reason is null and coalesce({cases}) is not null").format(
        stage=STAGE, pairs=pairs, cases=sql.SQL(", ").join(cases))


def _nz(col: str) -> sql.Composable:
    """A staging column as a value: blank text is null."""
    return sql.SQL("nullif(btrim(s.{}), '')").format(sql.Identifier(col))


_ITEM_VALUE = {
    "title": lambda: sql.SQL("nullif(s.title, '')"),
    "description": lambda: sql.SQL("nullif(s.description, '')"),
    "brand": lambda: _nz("brand"),
    "category_path": lambda: sql.SQL("pgrecs.ingest_category_path(s.category_path)"),
    "attributes": lambda: sql.SQL("{}::jsonb").format(_nz("attributes")),
    "price": lambda: sql.SQL("{}::numeric(14, 4)").format(_nz("price")),
    "currency": lambda: sql.SQL("upper({})").format(_nz("currency")),
    "stock": lambda: sql.SQL("{}::integer").format(_nz("stock")),
    "margin": lambda: sql.SQL("{}::numeric(9, 4)").format(_nz("margin")),
    "image_url": lambda: sql.SQL("pgrecs.ingest_image_url(s.image_url)"),
    "active": lambda: sql.SQL("coalesce({}::boolean, true)").format(_nz("active")),
}
_ITEM_DEFAULT = {"attributes": "'{}'::jsonb", "category_path": "'{}'::text[]"}


class Loader:
    """Runs batches of one kind into one tenant over one connection.

    `load_batches` is shared by the loaders of one load (the batch ids it wrote), so an event
    repeated across batches counts as a duplicate, not as unchanged. `track_lines` (file loads of
    items, on one connection) remembers each external_id's line across batches, so an id
    repeated in a later batch supersedes the earlier line.
    """

    def __init__(self, conn: psycopg.Connection, kind: str, *, tenant: str, source: str, source_sha256: str,
                 columns: list[str], load_batches: list[int] | None = None, track_lines: bool = False):
        if kind not in FIELDS:
            raise PgrecsError(f"unknown kind {kind!r} (items or events)")
        self.conn = conn
        self.kind = kind
        self.tenant = tenant
        self.source = source
        self.sha = source_sha256
        self.columns = columns
        self.load_batches = load_batches if load_batches is not None else []
        self.track_lines = track_lines and kind == "items"
        by_name = {f.name: f for f in FIELDS[kind]}
        staged = set(columns)
        # Required fields are validated even when absent (they are then null: "missing ...").
        self.fields = [f for f in FIELDS[kind] if f.name in staged or f.required]
        self.stage_columns = columns + [f.name for f in self.fields if f.name not in staged]
        fields = [by_name[f.name] for f in self.fields]
        self._reject = _reject_sql(fields)
        self._warn = _warning_sql(fields)
        if self.track_lines:
            conn.execute(sql.SQL("create temporary table if not exists {} (external_id text primary key,"
                                 " line_number integer not null)").format(ITEM_LINES))
            conn.execute(sql.SQL("truncate {}").format(ITEM_LINES))

    # -- setup -----------------------------------------------------------------------------
    @staticmethod
    def check_schema(conn: psycopg.Connection, tenant: str) -> None:
        row = conn.execute(
            "select to_regclass('pgrecs.ingest_warnings') is not null,"
            " to_regprocedure('pgrecs.ingest_price_parts(text)') is not null").fetchone()
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
            self.load_batches.append(batch_id)
            self._stage(cur, batch)
            if "price" in self.stage_columns:
                # Prices with a currency, separators or a range become plain numbers: each distinct
                # text is parsed once (catalogs repeat their price points), plain numbers never.
                cur.execute(sql.SQL(
                    "update {stage} as s set price = coalesce(p.amount::text, s.price), price_currency = p.currency"
                    " from (select d.price, (pgrecs.ingest_price_parts(d.price)).* from ("
                    "  select distinct price from {stage} where pre_reason is null and btrim(price) <> ''"
                    "  and not pg_input_is_valid(btrim(price), 'numeric')) as d offset 0) as p"
                    " where s.price = p.price and s.pre_reason is null"
                ).format(stage=STAGE))
            cur.execute(self._reject)
            if self._warn is not None:
                cur.execute(self._warn)
            if self.kind == "items":
                self._supersede(cur)
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
            warnings = self._store_warnings(cur, batch_id)
            result.warned = sum(1 for w in warnings if not w.reason.startswith("superseded"))
            if collect_rejects:
                result.warnings = warnings
            valid = len(batch) - len(rejects)
            if valid:
                if self.kind == "items":
                    counts = self._merge_items(cur, batch.present)
                    result.inserted, result.updated, result.superseded, winners = counts
                    result.unchanged = winners - result.inserted - result.updated
                else:
                    result.inserted, result.unchanged = self._merge_events(cur, valid)
                    result.duplicates = valid - result.inserted - result.unchanged
                if collect_ids:
                    result.ids = self._ids(cur)
            cur.execute(
                "update pgrecs.ingest_batches set inserted = %s, updated = %s, unchanged = %s, rejected = %s,"
                " superseded = %s, duplicates = %s, warnings = %s, finished_at = clock_timestamp() where batch_id = %s",
                (result.inserted, result.updated, result.unchanged, result.rejected, result.superseded,
                 result.duplicates, result.warned, batch_id))
            cur.execute("select set_config('timezone', %s, true)", (old_tz,))
        log.debug("%s lines %d-%d: %s", self.source, batch.first_line, batch.last_line, result.as_dict())
        return result

    def _stage(self, cur: psycopg.Cursor, batch: Batch) -> None:
        cols = [sql.SQL("{} text").format(sql.Identifier(c)) for c in self.stage_columns]
        extra = ["warned jsonb"]
        if self.kind == "items":
            extra += ["superseded_by integer", "repeats integer"]
        if "price" in self.stage_columns:
            extra.append("price_currency text")
        cur.execute(sql.SQL("drop table if exists {}").format(STAGE))
        cur.execute(sql.SQL(
            "create temporary table {} (line_number integer not null, pre_reason text, {}, {}) on commit drop"
        ).format(STAGE, sql.SQL(", ".join(extra)), sql.SQL(", ").join(cols)))
        copy_sql = sql.SQL("copy {} ({}) from stdin").format(
            STAGE, sql.SQL(", ").join(map(sql.Identifier, ["line_number", "pre_reason", *self.columns])))
        with cur.copy(copy_sql) as copy:
            write = copy.write_row
            for row in batch.rows:
                write(row)
        # Row count and the join keys' statistics are what the merge plans need; a full analyze costs more.
        keys = ["external_id"] if self.kind == "items" else ["user_id", "item_id"]
        cur.execute(sql.SQL("analyze {} ({})").format(STAGE, sql.SQL(", ").join(map(sql.Identifier, keys))))

    def _supersede(self, cur: psycopg.Cursor) -> None:
        """The last line of each external_id wins; earlier lines (this batch, or earlier batches of the load) are superseded."""
        cur.execute(sql.SQL(
            "update {stage} as s set superseded_by = d.winner from ("
            " select line_number, max(line_number) over (partition by btrim(external_id)) as winner"
            " from {stage} where pre_reason is null) as d"
            " where d.line_number = s.line_number and d.winner <> s.line_number").format(stage=STAGE))
        if self.track_lines:
            cur.execute(sql.SQL(
                "update {stage} as s set repeats = seen.line_number from {lines} as seen"
                " where seen.external_id = btrim(s.external_id) and s.pre_reason is null and s.superseded_by is null"
            ).format(stage=STAGE, lines=ITEM_LINES))
            cur.execute(sql.SQL(
                "insert into {lines} (external_id, line_number)"
                " select btrim(external_id), line_number from {stage} where pre_reason is null and superseded_by is null"
                " on conflict (external_id) do update set line_number = excluded.line_number"
            ).format(stage=STAGE, lines=ITEM_LINES))

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

    def _store_warnings(self, cur: psycopg.Cursor, batch_id: int) -> list[FieldWarning]:
        """Field warnings of the records that load, and superseded lines; kept in pgrecs.ingest_warnings."""
        parts = [sql.SQL(
            "select s.line_number, w.key as field, w.value as reason, left(to_jsonb(s) ->> w.key, 200) as value"
            " from {stage} as s cross join lateral jsonb_each_text(s.warned) as w"
            " where s.warned is not null and s.pre_reason is null{winner}").format(
            stage=STAGE, winner=sql.SQL(" and s.superseded_by is null" if self.kind == "items" else ""))]
        if self.kind == "items":
            parts.append(sql.SQL(
                "select line_number, 'external_id', 'superseded by line ' || superseded_by, btrim(external_id)"
                " from {stage} where superseded_by is not null").format(stage=STAGE))
            parts.append(sql.SQL(
                "select repeats, 'external_id', 'superseded by line ' || line_number, btrim(external_id)"
                " from {stage} where repeats is not null").format(stage=STAGE))
        rows = cur.execute(sql.SQL(
            "with w (line_number, field, reason, value) as ({union}),"
            " kept as (insert into pgrecs.ingest_warnings as r"
            "  (tenant_id, batch_id, kind, source, source_sha256, line_number, field, reason, value)"
            "  select %(tenant)s, %(batch)s, %(kind)s, %(source)s, %(sha)s, line_number, field, reason, value from w"
            "  on conflict (tenant_id, kind, source_sha256, line_number, field) do update"
            "  set batch_id = excluded.batch_id, source = excluded.source, reason = excluded.reason,"
            "  value = excluded.value, created_at = now())"
            " select line_number, field, reason, value from w order by line_number, field").format(
            union=sql.SQL(" union all ").join(parts)),
            {"tenant": self.tenant, "batch": batch_id, "kind": self.kind, "source": self.source, "sha": self.sha}).fetchall()
        return [FieldWarning(*row) for row in rows]

    def _merge_items(self, cur: psycopg.Cursor, present: set[str]) -> tuple[int, int, int, int]:
        """(inserted, updated, superseded, winners): winners are the lines that reach the upsert.

        Rows with warnings are upserted without their warned fields (one statement per set of
        warned fields, usually none or one), so a new item leaves them empty and an existing one
        keeps what it has.
        """
        has = set(self.stage_columns)
        cols = [f.name for f in FIELDS["items"] if f.name != "external_id" and f.name in present and f.name in has]
        groups = cur.execute(sql.SQL(
            "select distinct array(select jsonb_object_keys(warned) order by 1) from {stage}"
            " where warned is not null and pre_reason is null and superseded_by is null").format(stage=STAGE)).fetchall()
        inserted = updated = 0
        for warned in [None, *(keys for (keys,) in groups)]:
            n_inserted, n_updated = self._upsert_items(cur, [c for c in cols if c not in (warned or ())], warned)
            inserted += n_inserted
            updated += n_updated
        row = cur.execute(sql.SQL(
            "select count(*) filter (where superseded_by is not null or repeats is not null),"
            " count(*) filter (where pre_reason is null and superseded_by is null and repeats is null) from {stage}"
        ).format(stage=STAGE)).fetchone()
        return inserted, updated, int(row[0]), int(row[1])

    def _upsert_items(self, cur: psycopg.Cursor, cols: list[str], warned: list[str] | None) -> tuple[int, int]:
        """Upsert the winning rows whose warned fields are exactly `warned` (None: no warnings), setting `cols`."""
        has = set(self.stage_columns)
        keep_when_null: set[str] = set()
        values = []
        for c in cols:
            value = _ITEM_VALUE[c]()
            if c == "currency" and "price" in has:
                value = sql.SQL("coalesce({}, s.price_currency)").format(value)
            values.append(sql.SQL("coalesce({}, {})").format(value, sql.SQL(_ITEM_DEFAULT[c])) if c in _ITEM_DEFAULT
                          else value)
        if "price" in has and "price" in cols and "currency" not in cols:
            # A price's own currency fills an absent (or unusable) currency, never clears a stored one.
            cols = [*cols, "currency"]
            values.append(sql.SQL("s.price_currency"))
            keep_when_null.add("currency")
        ids = [sql.Identifier(c) for c in cols]
        target = sql.SQL(", ").join([sql.Identifier("tenant_id"), sql.Identifier("external_id"), *ids])
        select = sql.SQL(", ").join([sql.Placeholder("tenant"), sql.SQL("btrim(s.external_id)"), *values])

        def incoming(c: str) -> sql.Composable:
            if c in keep_when_null:
                return sql.SQL("coalesce(excluded.{0}, it.{0})").format(sql.Identifier(c))
            return sql.SQL("excluded.{}").format(sql.Identifier(c))

        if cols:
            sets = sql.SQL(", ").join([sql.SQL("{} = {}").format(sql.Identifier(c), incoming(c)) for c in cols]
                                      + [sql.SQL("updated_at = now()")])
            mine = sql.SQL(", ").join([sql.SQL("it.{}").format(i) for i in ids])
            theirs = sql.SQL(", ").join([incoming(c) for c in cols])
            conflict = sql.SQL("do update set {} where ({}, null) is distinct from ({}, null)").format(sets, mine, theirs)
        else:
            conflict = sql.SQL("do nothing")
        which = (sql.SQL("s.warned is null") if warned is None
                 else sql.SQL("s.warned is not null and array(select jsonb_object_keys(s.warned) order by 1) = %(warned)s"))
        row = cur.execute(sql.SQL(
            "with up as ("
            " insert into pgrecs.items as it ({target}) select {select} from {stage} as s"
            " where s.pre_reason is null and s.superseded_by is null and {which}"
            " on conflict (tenant_id, external_id) {conflict}"
            " returning it.external_id, (xmax = 0) as inserted)"
            # a line repeating an id an earlier batch of this load wrote counts as superseding, not as an update
            " select count(*) filter (where up.inserted), count(*) filter (where not up.inserted and r.id is null)"
            " from up left join (select distinct btrim(external_id) as id from {stage} where repeats is not null) as r"
            " on r.id = up.external_id"
        ).format(target=target, select=select, stage=STAGE, conflict=conflict, which=which),
            {"tenant": self.tenant, "warned": warned}).fetchone()
        return int(row[0]), int(row[1])

    def _merge_events(self, cur: psycopg.Cursor, valid: int) -> tuple[int, int]:
        """(inserted, unchanged); the rest of the valid lines are duplicates within this load."""
        params = {"tenant": self.tenant, "batch": self.load_batches[-1], "load": list(self.load_batches)}
        cur.execute(sql.SQL(
            "insert into pgrecs.users (tenant_id, external_id)"
            " select distinct %(tenant)s, btrim(s.user_id) from {stage} as s"
            " where s.pre_reason is null and not exists ("
            "  select 1 from pgrecs.users as u where u.tenant_id = %(tenant)s and u.external_id = btrim(s.user_id))"
            " order by 2"  # one lock order for concurrent batches: no deadlocks between workers
            " on conflict (tenant_id, external_id) do nothing").format(stage=STAGE), params)
        value, session, request, event_id = self._event_optionals()
        inserted = cur.execute(sql.SQL(
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
        ).format(stage=STAGE, value=value, session=session, request=request, event_id=event_id), params).fetchone()[0]
        if inserted == valid:
            return int(inserted), 0
        # Some lines were not inserted: unchanged when an earlier load stored their event, else
        # duplicates within this load. A new statement, so the batches of this load that the insert
        # waited for are committed and visible.
        unchanged = cur.execute(sql.SQL(
            "select count(*) from (select distinct pgrecs.ingest_event_key(btrim(s.user_id), btrim(s.item_id),"
            "  lower(btrim(s.event_type)), pgrecs.ingest_time(s.occurred_at), {value}, {session}, {event_id}) as dedup_key"
            "  from {stage} as s where s.pre_reason is null) as k"
            " where exists (select 1 from pgrecs.events as e where e.tenant_id = %(tenant)s"
            "  and e.dedup_key = k.dedup_key and coalesce(e.batch_id <> all(%(load)s::bigint[]), true))"
        ).format(stage=STAGE, value=value, session=session, event_id=event_id),
            {**params, "load": list(self.load_batches)}).fetchone()[0]  # batches started meanwhile count too
        return int(inserted), int(unchanged)

    def _event_optionals(self) -> tuple[sql.Composable, ...]:
        """value, session_id, request_id, event_id of a staged event; a column the file lacks is a typed
        null, a warned one is null."""
        has = set(self.stage_columns)

        def column(name: str, expression: str, type_: str) -> sql.Composable:
            if name not in has:
                return sql.SQL(f"null::{type_}")
            return sql.SQL(f"case when s.warned ? '{name}' then null else {expression} end")

        return (column("value", "nullif(btrim(s.value), '')::float8", "float8"),
                column("session_id", "nullif(s.session_id, '')", "text"),
                column("request_id", "nullif(s.request_id, '')", "text"),
                sql.SQL("s.event_id") if "event_id" in has else sql.SQL("null::text"))

    def _ids(self, cur: psycopg.Cursor) -> dict[int, int]:
        if self.kind == "items":
            rows = cur.execute(sql.SQL(
                "select s.line_number, i.item_id from {stage} as s join pgrecs.items as i"
                " on i.tenant_id = %s and i.external_id = btrim(s.external_id) where s.pre_reason is null").format(stage=STAGE),
                (self.tenant,)).fetchall()
        else:
            value, session, _, event_id = self._event_optionals()
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
        except psycopg.Error as exc:
            # The database's own text goes to the log (`pgrecs load -v`); the user gets what to do.
            lines = f"lines {batch.first_line}-{batch.last_line}"
            log.debug("%s: batch at %s failed: %s", loader.source, lines, exc, exc_info=True)
            what = "lost the database connection" if isinstance(exc, psycopg.OperationalError) else "failed"
            raise PgrecsError(f"{Path(loader.source).name}: the batch at {lines} {what} and was rolled back "
                              f"(earlier batches are kept); re-run the same command to finish, "
                              f"add -v to see the database's message") from exc

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


