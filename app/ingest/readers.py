"""Readers: a CSV or JSON Lines file (gzip or not) to batches of staging rows.

Python only parses. Every record becomes one tuple `(line_number, pre_reason, *canonical text
values)` for COPY; the database does the validation. Records are read as bytes decoded with
`surrogateescape`, so invalid UTF-8 survives parsing and is rejected here (the raw text is kept
with backslash escapes) instead of aborting the load.
"""

from __future__ import annotations

import collections
import csv
import gzip
import hashlib
import io
import json
import operator
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pgrecs.errors import PgrecsError
from pgrecs.ingest.fields import FIELDS, field_names

FORMATS = ("csv", "jsonl")
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
csv.field_size_limit(64 * 1024 * 1024)  # oversized fields are rejected by the database, not by the parser


@dataclass
class Batch:
    """One transaction's worth of records, ready for COPY."""

    first_line: int
    last_line: int = 0
    rows: list[tuple] = field(default_factory=list)
    raws: dict[int, str] = field(default_factory=dict)
    present: set[str] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.rows)


def raw_text(text: str) -> str:
    """Raw record text safe to store: undecodable bytes shown as \\xNN escapes, NUL as \\x00."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.replace("\x00", "\\x00")


def bad_text_reason(text: str) -> str | None:
    """'invalid UTF-8' or 'NUL character' when the decoded text cannot go into PostgreSQL."""
    if "\x00" in text:
        return "NUL character"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "invalid UTF-8"
    return None


def parse_mapping(kind: str, pairs: Iterable[str]) -> dict[str, str]:
    """`canonical=source` pairs to a dict; unknown canonical names are an error."""
    names = field_names(kind)
    mapping: dict[str, str] = {}
    for pair in pairs:
        canonical, sep, source = pair.partition("=")
        canonical, source = canonical.strip(), source.strip()
        if not sep or not canonical or not source:
            raise PgrecsError(f"bad mapping {pair!r}: expected canonical=source_column")
        if canonical not in names:
            raise PgrecsError(f"bad mapping {pair!r}: {canonical!r} is not an {kind} field ({', '.join(names)})")  # items, events
        mapping[canonical] = source
    return mapping


def parse_constants(kind: str, pairs: Iterable[str]) -> dict[str, str]:
    """`canonical=value` pairs for fields the file lacks (e.g. event_type=purchase)."""
    names = field_names(kind)
    constants: dict[str, str] = {}
    for pair in pairs:
        canonical, sep, value = pair.partition("=")
        canonical = canonical.strip()
        if not sep or canonical not in names:
            raise PgrecsError(f"bad --set {pair!r}: expected field=value with an {kind} field ({', '.join(names)})")
        constants[canonical] = value
    return constants


def detect_format(path: Path, fmt: str | None) -> tuple[str, bool]:
    """(format, gzipped) from the name, or from --format; gzip is also recognised by its magic bytes."""
    name = path.name.lower()
    gzipped = name.endswith(".gz")
    if not gzipped:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
    if fmt:
        if fmt not in FORMATS:
            raise PgrecsError(f"unknown format {fmt!r} (choose {' or '.join(FORMATS)})")
        return fmt, gzipped
    stem = name[:-3] if name.endswith(".gz") else name
    detected = _EXTENSIONS.get(os.path.splitext(stem)[1])
    if detected is None:
        raise PgrecsError(f"cannot tell the format of {path.name}: name it .csv or .jsonl (optionally .gz) or pass --format csv|jsonl")
    return detected, gzipped


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class FileSource:
    """Records of one file. Iterate `batches(n)`; `bytes_read()` drives the progress bar."""

    def __init__(self, kind: str, path: str | os.PathLike, *, fmt: str | None = None,
                 mapping: dict[str, str] | None = None, constants: dict[str, str] | None = None):
        self.kind = kind
        self.path = Path(path)
        if not self.path.exists():
            raise PgrecsError(f"file not found: {self.path}")
        if not self.path.is_file():
            raise PgrecsError(f"not a file: {self.path}")
        self.format, self.gzipped = detect_format(self.path, fmt)
        self.mapping = dict(mapping or {})
        self.constants = dict(constants or {})
        for name in self.constants:
            if name in self.mapping:
                raise PgrecsError(f"field {name!r} is both mapped and set to a constant")
        self.size = self.path.stat().st_size
        self._raw = None

    # -- file access ------------------------------------------------------------------------
    def _open_text(self) -> io.TextIOBase:
        self._raw = open(self.path, "rb")
        stream = gzip.GzipFile(fileobj=self._raw, mode="rb") if self.gzipped else self._raw
        newline = "" if self.format == "csv" else None
        return io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline=newline)

    def bytes_read(self) -> int:
        try:
            return self._raw.tell() if self._raw and not self._raw.closed else self.size
        except (OSError, ValueError):
            return self.size

    def batches(self, batch_size: int) -> Iterator[Batch]:
        try:
            with self._open_text() as text:
                if self.format == "csv":
                    yield from self._csv_batches(text, batch_size)
                else:
                    yield from self._jsonl_batches(text, batch_size)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise PgrecsError(f"{self.path.name}: not a readable gzip file ({exc})") from exc

    # -- layout -----------------------------------------------------------------------------
    def _layout(self, available: Callable[[str], bool], where: str) -> list[tuple[str, str]]:
        """[(canonical, source)] for the fields this file provides, after mapping."""
        for canonical, source in self.mapping.items():
            if not available(source):
                raise PgrecsError(f"bad mapping {canonical}={source}: no column {source!r} in {where}")
        layout = []
        for name in field_names(self.kind):
            if name in self.constants:
                continue
            source = self.mapping.get(name, name)
            if available(source):
                layout.append((name, source))
        present = {name for name, _ in layout} | set(self.constants)
        missing = [f.name for f in FIELDS[self.kind] if f.required and f.check == "id" and f.name not in present]
        if missing:
            raise PgrecsError(f"{self.path.name}: no {', '.join(missing)} column in {where}; "
                              f"use --map {missing[0]}=COLUMN (is this a {self.kind} file in {self.format} format?)")
        return layout

    @property
    def columns(self) -> list[str]:
        """Staging columns after line_number and pre_reason, in tuple order."""
        return self._columns

    # -- CSV --------------------------------------------------------------------------------
    def _csv_batches(self, text: io.TextIOBase, batch_size: int) -> Iterator[Batch]:
        source = _Lines(text)
        reader = csv.reader(source, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise PgrecsError(f"{self.path.name} is empty (a CSV file needs a header row)") from None
        except csv.Error as exc:
            raise PgrecsError(f"{self.path.name}: unreadable CSV header ({exc})") from None
        header = [h.strip() for h in header]
        if bad_text_reason("".join(header)):
            raise PgrecsError(f"{self.path.name}: the header row is not UTF-8 text (is this a {self.format} file?)")
        positions = {}
        for i, name in enumerate(header):
            positions.setdefault(name, i)
        layout = self._layout(positions.__contains__, "the CSV header")
        self._columns = [name for name, _ in layout] + list(self.constants)
        present = set(self._columns)
        idx = [positions[source_name] for _, source_name in layout]
        consts = tuple(self.constants.values())
        width = len(header)
        empty = (None,) * len(self._columns)
        if len(idx) == 1:
            only = idx[0]
            getter = lambda row: (row[only],)  # noqa: E731
        else:
            getter = operator.itemgetter(*idx)

        captured = source.captured
        consumed = len(captured)
        captured.clear()
        batch = Batch(first_line=consumed + 1, present=present)
        rows, raws = batch.rows, batch.raws
        while True:
            try:
                row = next(reader)
                pre = None
            except StopIteration:
                break
            except csv.Error as exc:
                row, pre = None, f"malformed CSV: {exc}"
                if str(exc) == "unexpected end of data":  # a quote still open when the file ends
                    pre = "malformed CSV: unterminated quote"
            n = len(captured)
            if n > 1 and (row is None or len(row) != width):
                # A quote opened and never closed on this line swallowed the lines after it: only
                # this line is lost; the following lines are read again as records of their own.
                source.push_back(captured[1:])
                row, pre, n = None, "malformed CSV: unterminated quote", 1
            raw = captured[0] if n == 1 else "".join(captured)
            captured.clear()
            line = consumed + 1
            consumed += n
            if row is not None and not row:
                continue  # blank line: not a record
            if pre is None:
                if len(row) != width:
                    pre = "wrong column count"
                else:
                    pre = bad_text_reason(raw)
            if pre is None:
                rows.append((line, None) + getter(row) + consts)
            else:
                rows.append((line, pre) + empty)
            raws[line] = raw
            if len(rows) >= batch_size:
                batch.last_line = line
                yield batch
                batch = Batch(first_line=consumed + 1, present=present)
                rows, raws = batch.rows, batch.raws
        if rows:
            batch.last_line = max(raws)
            yield batch

    # -- JSON Lines -------------------------------------------------------------------------
    def _jsonl_batches(self, text: io.TextIOBase, batch_size: int) -> Iterator[Batch]:
        lines = enumerate(text, 1)
        first = None
        pending: list[tuple[int, str]] = []
        for line_number, line in lines:
            if line.strip():
                pending.append((line_number, line))
                try:
                    first = json.loads(line)
                except ValueError:
                    first = None
                if not isinstance(first, dict):
                    raise PgrecsError(f"{self.path.name} does not look like JSON Lines: line {line_number} is not a JSON object")
                break
            pending.append((line_number, line))
        if first is None:
            self._columns = [name for name in field_names(self.kind) if name not in self.constants] + list(self.constants)
            return
        layout = self._layout(first.__contains__, "the first JSON object")
        # Every canonical field gets a staging column; `present` says which ones the batch carried.
        sources = {name: self.mapping.get(name, name) for name in field_names(self.kind) if name not in self.constants}
        self._columns = list(sources) + list(self.constants)
        keys = list(sources.values())
        source_to_name = {v: k for k, v in sources.items()}
        consts = tuple(self.constants.values())
        empty = (None,) * len(self._columns)
        del layout

        def records():
            yield from pending
            yield from lines

        batch = Batch(first_line=pending[0][0] if pending else 1, present=set(self.constants))
        seen: set[str] = set()
        for line_number, line in records():
            if not line.strip():
                continue
            raw = line.rstrip("\r\n")
            pre = bad_text_reason(raw)
            values = None
            if pre is None:
                try:
                    obj = json.loads(raw)
                except ValueError:
                    obj = None
                if not isinstance(obj, dict):
                    pre = "malformed JSON line"
                else:
                    seen.update(obj)
                    values = tuple(map(to_text, map(obj.get, keys)))
                    if "\\u" in raw:  # escapes may decode to NUL or lone surrogates
                        pre = bad_text_reason("".join(v for v in values if v))
            batch.rows.append((line_number, pre) + (values + consts if pre is None else empty))
            batch.raws[line_number] = raw
            if len(batch.rows) >= batch_size:
                batch.last_line = line_number
                batch.present |= {source_to_name[k] for k in seen if k in source_to_name}
                yield batch
                batch = Batch(first_line=line_number + 1, present=set(self.constants))
                seen = set()
        if batch.rows:
            batch.last_line = max(batch.raws)
            batch.present |= {source_to_name[k] for k in seen if k in source_to_name}
            yield batch


class _Lines:
    """Physical lines for the CSV reader: remembers the lines of the current record, and lines
    pushed back are read again. A quoted field may span many lines, but not more than
    MAX_RECORD_LINES: past that the reader is told the file ended, which ends the record as an
    unterminated quote (so one stray quote cannot hold the rest of a large file in memory)."""

    MAX_RECORD_LINES = 10_000

    def __init__(self, text: Iterable[str]):
        self._text = iter(text)
        self._pending: collections.deque[str] = collections.deque()
        self.captured: list[str] = []

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        if len(self.captured) >= self.MAX_RECORD_LINES:
            raise StopIteration
        if self._pending:
            line = self._pending.popleft()
        else:
            line = next(self._text)  # StopIteration at the end of the file; later calls may still get pushed-back lines
        self.captured.append(line)
        return line

    def push_back(self, lines: list[str]) -> None:
        self._pending.extendleft(reversed(lines))


def to_text(value) -> str | None:
    """A JSON value as the text the staging table holds."""
    if value is None or isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def records_batch(kind: str, records: list[dict]) -> tuple[list[str], Batch]:
    """API records (canonical-named dicts) as one batch; line_number is the 1-based list index."""
    names = list(field_names(kind))
    batch = Batch(first_line=1, last_line=len(records))
    empty = (None,) * len(names)
    allowed = set(names)
    for line_number, record in enumerate(records, 1):
        try:
            raw = json.dumps(record, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            raw = repr(record)
        pre = None
        if not isinstance(record, dict):
            pre = "malformed JSON line"
        else:
            unknown = set(record) - allowed
            if unknown:
                pre = f"unknown field: {sorted(unknown)[0]}"
        values = None
        if pre is None:
            batch.present.update(record)
            values = tuple(to_text(record.get(n)) for n in names)
            pre = bad_text_reason("".join(v for v in values if v))
        batch.rows.append((line_number, pre) + (values if pre is None else empty))
        batch.raws[line_number] = raw_text(raw)
    return names, batch
