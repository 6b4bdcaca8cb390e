"""`pgrecs load items|events FILE` and `pgrecs rejects`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pgrecs.errors import PgrecsError
from pgrecs.ingest import DEFAULT_BATCH_SIZE, REASONS, field_names, load_file, parse_constants, parse_mapping
from pgrecs.ingest.readers import FORMATS, file_sha256


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
@click.option("-v", "--verbose", is_flag=True, help="Log each batch and, on a failure, the database's message.")
@click.pass_context
def load(ctx: click.Context, kind: str, file: Path, fmt: str | None, maps: tuple[str, ...], sets: tuple[str, ...],
         batch_size: int, workers: int, quiet: bool, verbose: bool) -> None:
    """Load items or events from FILE (CSV with a header, or JSON Lines; gzip too).

    \b
    Item fields:  external_id, title, description, brand, category_path, attributes,
                  price, currency, stock, margin, image_url, active
    Event fields: user_id, item_id, event_type, value, occurred_at, session_id,
                  request_id, event_id

    Items are upserted by external_id (unchanged rows are not rewritten); events are stored
    once per dedup key. Rejected records are kept with line number and reason: see
    `pgrecs rejects`. Prints inserted / updated / unchanged / rejected counts.
    """
    from pgrecs.cli import tenant_from, url_from
    from pgrecs.db import connect

    if verbose:
        _log_to_stderr()
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
    width = max(len(f"{n:,}") for n in (result.inserted, result.updated, result.unchanged, result.rejected))
    for label, n in (("inserted", result.inserted), ("updated", result.updated),
                     ("unchanged", result.unchanged), ("rejected", result.rejected)):
        click.echo(f"  {label:<10} {n:>{width},}")
    if result.rejected:
        click.echo(f"see the rejects: pgrecs rejects --source {file}")


def _log_to_stderr() -> None:
    import logging

    logger = logging.getLogger("pgrecs.ingest")
    for old in [h for h in logger.handlers if getattr(h, "pgrecs_cli", False)]:
        logger.removeHandler(old)  # one handler, on this invocation's stderr
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.pgrecs_cli = True
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


@click.command("rejects")
@click.option("--source", "source", default=None, metavar="FILE",
              help="Only rejects of this file (this exact content when the file exists, else by name).")
@click.option("--kind", type=click.Choice(["items", "events"]), default=None, help="Only items or only events.")
@click.option("--reason", default=None, help="Only reasons starting with this text (e.g. 'bad type').")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many rows.")
@click.option("--width", type=click.IntRange(min=20), default=100, show_default=True, help="Truncate raw text to this.")
@click.pass_context
def rejects(ctx: click.Context, source: str | None, kind: str | None, reason: str | None, limit: int, width: int) -> None:
    """List rejected records: file, line, reason and the raw record (truncated).

    \b
    Reasons: """
    from pgrecs.cli import tenant_from, url_from
    from pgrecs.db import connect

    tenant = tenant_from(ctx)
    clauses = ["tenant_id = %(tenant)s"]
    params: dict = {"tenant": tenant, "limit": limit}
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
    query = ("select kind, source, line_number, reason, raw, count(*) over () from pgrecs.ingest_rejects"
             f" where {' and '.join(clauses)} order by source, kind, line_number limit %(limit)s")
    with connect(url_from(ctx), tenant=tenant) as conn:
        try:
            rows = conn.execute(query, params).fetchall()
        except Exception as exc:
            if exc.__class__.__name__ == "UndefinedTable":
                raise PgrecsError("the database schema is not ready: run `pgrecs migrate` first") from exc
            raise
    if not rows:
        click.echo("no rejects")
        return
    last_source = None
    for kind_, src, line, why, raw, total in rows:
        if (src, kind_) != last_source:
            click.echo(f"{kind_} from {src}:")
            last_source = (src, kind_)
        text = raw.rstrip("\r\n").replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
        if len(text) > width:
            text = text[: width - 1] + "…"
        click.echo(f"  line {line:>7}  {why:<32} {text}")
    total = rows[0][5]
    if total > len(rows):
        click.echo(f"({len(rows)} of {total:,} shown; use --limit)")


rejects.help = (rejects.help or "") + ", ".join(sorted(REASONS))

COMMANDS = [load, rejects]
