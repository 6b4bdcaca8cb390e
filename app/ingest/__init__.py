"""Loss-free ingestion of items and events: files (`load_file`) and API records (`ingest_records`).

Both go through the same path: parse in Python, COPY into a staging table, validate set-based in
SQL, store rejects with line number and reason, merge the rest. See app/ingest/loader.py.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pgrecs.errors import PgrecsError
from pgrecs.ingest.fields import FIELDS, KINDS, REASONS, WARNINGS, field_names
from pgrecs.ingest.readers import (DEFAULT_BATCH_SIZE, Batch, FileSource, file_sha256, parse_constants,
                                   parse_mapping, records_batch)

# the loader (and psycopg under it) is imported by the functions that load: `pgrecs load --help`
# and the rest of the CLI start without a database driver
if TYPE_CHECKING:
    import psycopg

    from pgrecs.ingest.loader import LoadResult

__all__ = [
    "DEFAULT_BATCH_SIZE", "FIELDS", "KINDS", "REASONS", "WARNINGS", "Batch", "FileSource",
    "field_names", "ingest_records", "load_file", "parse_constants", "parse_mapping",
]


def _tenant_of(conn: psycopg.Connection, tenant: str | None) -> str:
    if tenant:
        return tenant
    return conn.execute("select pgrecs.current_tenant()").fetchone()[0]


def ingest_records(conn: psycopg.Connection, kind: str, records: list[dict], *, source: str = "api",
                   tenant: str | None = None) -> LoadResult:
    """Validate and merge canonical-named records (one batch, one transaction or savepoint).

    `line_number` in the returned rejects and warnings is the 1-based index in `records`; `ids`
    maps the line number of each accepted record to its internal item_id / event_id. Rejects and
    warnings are also stored in pgrecs.ingest_rejects and pgrecs.ingest_warnings under `source`.
    """
    from pgrecs.ingest.loader import Loader, LoadResult, records_sha256, run_batches

    if kind not in KINDS:
        raise PgrecsError(f"unknown kind {kind!r} (items or events)")
    tenant = _tenant_of(conn, tenant)
    Loader.check_schema(conn, tenant)
    result = LoadResult(source=source)
    if not records:
        return result
    columns, batch = records_batch(kind, list(records))
    sha = records_sha256(list(records))
    loader = Loader(conn, kind, tenant=tenant, source=source, source_sha256=sha, columns=columns)
    result = run_batches([loader], [batch], collect_rejects=True, collect_ids=True)
    return result


def load_file(conn: psycopg.Connection, kind: str, path: str | os.PathLike, *, fmt: str | None = None,
              mapping: dict[str, str] | None = None, constants: dict[str, str] | None = None,
              batch_size: int = DEFAULT_BATCH_SIZE, tenant: str | None = None,
              progress: Callable[[FileSource, Batch], None] | None = None,
              collect_rejects: bool = False, workers: int = 1, url: str | None = None) -> LoadResult:
    """Load a CSV / JSON Lines file (gzip too) of `kind` in batches of `batch_size` records.

    Each batch commits on its own (the connection should be in autocommit mode); a failure rolls
    back only the current batch, and re-running the same file finishes the job without duplicates.
    With `workers` > 1 and `url`, events batches run on that many connections at once (items
    always run in file order on `conn`, so the last line for an id wins).
    """
    from pgrecs.db import connect
    from pgrecs.ingest.loader import Loader, run_batches

    if kind not in KINDS:
        raise PgrecsError(f"unknown kind {kind!r} (items or events)")
    if batch_size < 1:
        raise PgrecsError("--batch-size must be at least 1")
    started = time.perf_counter()
    source = FileSource(kind, path, fmt=fmt, mapping=mapping, constants=constants)
    tenant = _tenant_of(conn, tenant)
    Loader.check_schema(conn, tenant)
    sha = file_sha256(source.path)
    batches = source.batches(batch_size)
    first = next(batches, None)  # parses the header: format and mapping errors surface here
    load_batches: list[int] = []

    def make_loader(connection: psycopg.Connection, *, first: bool = False) -> Loader:
        return Loader(connection, kind, tenant=tenant, source=str(source.path.resolve()), source_sha256=sha,
                      columns=source.columns, load_batches=load_batches, track_lines=first)

    def all_batches():
        if first is not None:
            yield first
        yield from batches

    report = (lambda batch: progress(source, batch)) if progress else None
    extra = max(0, workers - 1) if (kind == "events" and url and first is not None) else 0
    with contextlib.ExitStack() as stack:
        loaders = [make_loader(conn, first=True)]
        for _ in range(extra):
            loaders.append(make_loader(stack.enter_context(connect(url, tenant=tenant, autocommit=True))))
        result = run_batches(loaders, all_batches(), progress=report, collect_rejects=collect_rejects)
    result.elapsed_s = time.perf_counter() - started
    return result
