"""`pgrecs load items|events FILE` and `pgrecs rejects`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pgrecs.errors import PgrecsError
from pgrecs.ingest import DEFAULT_BATCH_SIZE, REASONS, WARNINGS, field_names, load_file, parse_constants, parse_mapping
from pgrecs.ingest.readers import FORMATS, file_sha256

STRICT_EXIT = 3


def _field_help(kind: str) -> str:
    return ", ".join(field_names(kind))


@click.command("load")
@click.argument("kind", type=click.Choice(["items", "events"]))
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Input format; default from the extension (.csv, .jsonl/.ndjson, optionally .gz).")
@click.option("--map", "maps", multiple=True, metavar="FIELD=COLUMN",
              help="Read canonical FIELD from source COLUMN (repeatable), e.g. --map external_id=sku.")
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE",
              help="Give FIELD one value for every record (repeatable), e.g. --set event_type=purchase.")
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True,
              help="Records per transaction.")
@click.option("--workers", type=click.IntRange(min=1, max=16), default=2, show_default=True,
              help="Connections loading events batches in parallel (items always load in file order).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--strict", is_flag=True,
              help=f"Exit with status {STRICT_EXIT} when any record is rejected (the good ones still load).")
@click.option("-v", "--verbose", is_flag=True, help="Log each batch and, on a failure, the database's message.")
@click.pass_context
def load(ctx: click.Context, kind: str, file: Path, fmt: str | None, maps: tuple[str, ...], sets: tuple[str, ...],
         batch_size: int, workers: int, quiet: bool, strict: bool, verbose: bool) -> None:
    """Load items or events from FILE (CSV with a header, or JSON Lines; gzip too).

    \b
    Item fields:  external_id, title, description, brand, category_path, attributes,
                  price, currency, stock, margin, image_url, active
    Event fields: user_id, item_id, event_type, value, occurred_at, session_id,
                  request_id, event_id

    Items are upserted by external_id (unchanged rows are not rewritten; a repeated id's last
    line wins and the earlier ones are superseded); events are stored once per dedup key.
    Rejected records are kept with line number and reason (`pgrecs rejects`); an optional field
    that does not parse is left empty with a warning (`pgrecs warnings`). Prints the counts.

    \b
    Exit status: 0 loaded (rejects and warnings are listed, not fatal); 1 an error (a
    missing or unreadable file, a bad --map, database failure: earlier batches stay, re-run
    to finish); 2 a usage error; 3 with --strict, some records were rejected.
    See docs/loading.md.
    """
    from pgrecs.cli import tenant_from, url_from
    from pgrecs.db import connect

    _log_to_stderr(verbose)
    mapping = parse_mapping(kind, maps)
    constants = parse_constants(kind, sets)
    if not file.exists():
        raise PgrecsError(f"file not found: {file}")
    if file.is_dir():
        raise PgrecsError(f"not a file: {file}")
    show = not quiet and sys.stderr.isatty()
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=file.stat().st_size, unit="B", unit_scale=True, desc=f"load {kind}", file=sys.stderr,
                   leave=False)

    def progress(source, batch) -> None:
        bar.update(max(0, source.bytes_read() - bar.n))
        bar.set_postfix(lines=batch.last_line, refresh=False)

    try:
        url = url_from(ctx)
        with connect(url, tenant=tenant_from(ctx), autocommit=True) as conn:
            result = load_file(conn, kind, file, fmt=fmt, mapping=mapping, constants=constants,
                               batch_size=batch_size, tenant=tenant_from(ctx), progress=progress if bar else None,
                               workers=workers, url=url)
    finally:
        if bar is not None:
            bar.close()
    click.echo(f"loaded {kind} from {file}: {result.records:,} records in {result.elapsed_s:.1f} s "
               f"({result.rows_per_s:,.0f} rows/s, {result.batches} batches)")
    repeated = ("superseded", result.superseded) if kind == "items" else ("duplicates", result.duplicates)
    lines = [("inserted", result.inserted), ("updated", result.updated), ("unchanged", result.unchanged),
             repeated, ("rejected", result.rejected), ("warnings", result.warned)]
    width = max(len(f"{n:,}") for _, n in lines)
    for label, n in lines:
        note = " (fields left empty; the records loaded)" if label == "warnings" and n else ""
        click.echo(f"  {label:<10} {n:>{width},}{note}")
    if result.rejected:
        click.echo(f"see the rejects: pgrecs rejects --source {file}")
    if result.warned or result.superseded:
        click.echo(f"see the warnings: pgrecs warnings --source {file}")
    if strict and result.rejected:
        click.echo(f"error: {result.rejected:,} records of {file} were rejected (--strict); the others loaded",
                   err=True)
        sys.exit(STRICT_EXIT)


def _log_to_stderr(verbose: bool) -> None:
    """Each batch logged on this invocation's stderr with -v; without it, nothing (a process that
    ran an earlier `pgrecs load -v`, a test run say, must not keep its level)."""
    import logging

    logger = logging.getLogger("pgrecs.ingest")
    for old in [h for h in logger.handlers if getattr(h, "pgrecs_cli", False)]:
        logger.removeHandler(old)  # one handler, on this invocation's stderr
    if not verbose:
        logger.setLevel(logging.NOTSET)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.pgrecs_cli = True
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


def _filters(ctx: click.Context, source: str | None, kind: str | None, reason: str | None,
             limit: int) -> tuple[str, dict]:
    """The where clause and parameters shared by `rejects` and `warnings`."""
    from pgrecs.cli import tenant_from

    clauses = ["tenant_id = %(tenant)s"]
    params: dict = {"tenant": tenant_from(ctx), "limit": limit}
    if source:
        path = Path(source)
        if path.is_file():
            clauses.append("source_sha256 = %(sha)s")
            params["sha"] = file_sha256(path)
        else:
            clauses.append("(source = %(source)s or source like %(suffix)s escape '\\')")
            params["source"] = source
            params["suffix"] = "%/" + source.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    if kind:
        clauses.append("kind = %(kind)s")
        params["kind"] = kind
    if reason:
        clauses.append("starts_with(reason, %(reason)s)")
        params["reason"] = reason
    return " and ".join(clauses), params


def _fetch(ctx: click.Context, query: str, params: dict) -> list[tuple]:
    from pgrecs.cli import tenant_from, url_from
    from pgrecs.db import connect

    with connect(url_from(ctx), tenant=tenant_from(ctx)) as conn:
        try:
            return conn.execute(query, params).fetchall()
        except Exception as exc:
            if exc.__class__.__name__ == "UndefinedTable":
                raise PgrecsError("the database schema is not ready: run `pgrecs migrate` first") from exc
            raise


def _one_line(text: str, width: int) -> str:
    text = text.rstrip("\r\n").replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    return text[: width - 1] + "…" if len(text) > width else text


_FILTER_OPTIONS = [
    click.option("--source", "source", default=None, metavar="FILE",
                 help="Only this file (this exact content when the file exists, else by name)."),
    click.option("--kind", type=click.Choice(["items", "events"]), default=None, help="Only items or only events."),
    click.option("--reason", default=None, help="Only reasons starting with this text (e.g. 'bad type')."),
    click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many rows."),
    click.option("--width", type=click.IntRange(min=20), default=100, show_default=True,
                 help="Truncate raw text to this."),
]


def _with_filters(command):
    for option in reversed(_FILTER_OPTIONS):
        command = option(command)
    return command


@click.command("rejects")
@_with_filters
@click.pass_context
def rejects(ctx: click.Context, source: str | None, kind: str | None, reason: str | None, limit: int, width: int) -> None:
    """List rejected records: file, line, reason and the raw record (truncated).

    \b
    Reasons: """
    where, params = _filters(ctx, source, kind, reason, limit)
    rows = _fetch(ctx, "select kind, source, line_number, format('%%-32s', reason), raw, count(*) over ()"
                       f" from pgrecs.ingest_rejects where {where} order by source, kind, line_number"
                       " limit %(limit)s", params)
    _print_listing(rows, "no rejects", width)


@click.command("warnings")
@_with_filters
@click.pass_context
def warnings(ctx: click.Context, source: str | None, kind: str | None, reason: str | None, limit: int,
             width: int) -> None:
    """List fields left empty in loaded records, and superseded lines: file, line, field, reason, value.

    \b
    Reasons: """
    where, params = _filters(ctx, source, kind, reason, limit)
    rows = _fetch(ctx, "select kind, source, line_number, format('%%-14s %%-24s', field, reason),"
                       " coalesce(value, ''), count(*) over ()"
                       f" from pgrecs.ingest_warnings where {where} order by source, kind, line_number, field"
                       " limit %(limit)s", params)
    _print_listing(rows, "no warnings", width)


def _print_listing(rows: list[tuple], none: str, width: int) -> None:
    """Rows of (kind, source, line, what, raw text, total) grouped by file."""
    if not rows:
        click.echo(none)
        return
    last_source = None
    for kind_, src, line, what, text, _ in rows:
        if (src, kind_) != last_source:
            click.echo(f"{kind_} from {src}:")
            last_source = (src, kind_)
        click.echo(f"  line {line:>7}  {what} {_one_line(text, width)}")
    total = rows[0][5]
    if total > len(rows):
        click.echo(f"({len(rows)} of {total:,} shown; use --limit)")


rejects.help = (rejects.help or "") + ", ".join(sorted(REASONS))
warnings.help = (warnings.help or "") + ", ".join(sorted(WARNINGS))

COMMANDS = [load, rejects, warnings]
