"""Loss-free ingestion: counts add up, re-runs change nothing, every reject reason is kept."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import pytest

from pgrecs.ingest import REASONS, WARNINGS, ingest_records

ITEM_HEADER = ["external_id", "title", "description", "brand", "category_path", "attributes", "price",
               "currency", "stock", "margin", "image_url", "active"]


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_jsonl(path: Path, records: list[dict], *, gz: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in records)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def counts(output: str) -> dict[str, int]:
    """The summary's counts; superseded (items) and duplicates (events) only when not zero."""
    found = dict(re.findall(r"^\s+(inserted|updated|unchanged|superseded|duplicates|rejected)\s+([\d,]+)$", output, re.M))
    assert {"inserted", "updated", "unchanged", "rejected"} <= set(found), output
    assert len({"superseded", "duplicates"} & set(found)) == 1, output  # one of them, by kind
    found = {k: int(v.replace(",", "")) for k, v in found.items()}
    return {k: v for k, v in found.items() if v or k not in ("superseded", "duplicates")}


def warning_count(output: str) -> int:
    return int(re.search(r"^\s+warnings\s+([\d,]+)", output, re.M).group(1).replace(",", ""))


def loaded(output: str) -> int:
    return int(re.search(r": ([\d,]+) records in", output).group(1).replace(",", ""))


def rejects(conn, kind: str | None = None) -> dict[int, str]:
    rows = conn.execute("select line_number, reason from pgrecs.ingest_rejects"
                        " where %s::text is null or kind = %s order by line_number", (kind, kind)).fetchall()
    return dict(rows)


def good_items(n: int = 5) -> list[list]:
    return [[f"SKU{i}", f"Item {i}", f"Description {i}", "Acme", "Home > Kitchen", json.dumps({"size": i}),
             f"{i}.50", "EUR", str(i), "0.2", f"https://img/{i}.jpg", "true"] for i in range(1, n + 1)]


def items_file(tmp_path: Path, n: int = 5, name: str = "items.csv") -> Path:
    return write_csv(tmp_path / name, ITEM_HEADER, good_items(n))


def events_file(tmp_path: Path, rows: list[list], name: str = "events.csv") -> Path:
    return write_csv(tmp_path / name, ["user_id", "item_id", "event_type", "value", "occurred_at", "session_id"], rows)


# -- items ------------------------------------------------------------------------------------
def test_items_load_twice_changes_nothing(cli, conn, tmp_path):
    path = items_file(tmp_path, 5)
    first = cli("load", "items", str(path))
    assert first.exit_code == 0, first.output
    assert counts(first.output) == {"inserted": 5, "updated": 0, "unchanged": 0, "rejected": 0}
    row = conn.execute("select title, category_path, attributes, price, currency, stock, active from pgrecs.items"
                       " where external_id = 'SKU2'").fetchone()
    assert row == ("Item 2", ["Home", "Kitchen"], {"size": 2}, pytest.approx(2.5), "EUR", 2, True)
    before = conn.execute("select external_id, updated_at, xmin::text from pgrecs.items order by 1").fetchall()

    second = cli("load", "items", str(path))
    assert counts(second.output) == {"inserted": 0, "updated": 0, "unchanged": 5, "rejected": 0}
    after = conn.execute("select external_id, updated_at, xmin::text from pgrecs.items order by 1").fetchall()
    assert after == before  # not rewritten: same row versions
    assert conn.execute("select count(*) from pgrecs.ingest_batches where kind = 'items'").fetchone()[0] == 2


def test_changed_file_updates_only_changed_rows(cli, conn, tmp_path):
    cli("load", "items", str(items_file(tmp_path, 5)))
    before = dict(conn.execute("select external_id, updated_at from pgrecs.items").fetchall())
    rows = good_items(6)
    rows[2][6] = "99.00"  # SKU3 price changes; SKU6 is new
    result = cli("load", "items", str(write_csv(tmp_path / "items2.csv", ITEM_HEADER, rows)))
    assert counts(result.output) == {"inserted": 1, "updated": 1, "unchanged": 4, "rejected": 0}
    after = dict(conn.execute("select external_id, updated_at from pgrecs.items").fetchall())
    assert [k for k in before if after[k] != before[k]] == ["SKU3"]
    assert conn.execute("select price from pgrecs.items where external_id = 'SKU3'").fetchone()[0] == 99


def test_partial_file_updates_only_its_columns(cli, conn, tmp_path):
    cli("load", "items", str(items_file(tmp_path, 3)))
    path = write_csv(tmp_path / "stock.csv", ["external_id", "stock"], [["SKU1", "0"], ["SKU2", "2"]])
    result = cli("load", "items", str(path))
    assert counts(result.output) == {"inserted": 0, "updated": 1, "unchanged": 1, "rejected": 0}
    assert conn.execute("select title, stock from pgrecs.items where external_id = 'SKU1'").fetchone() == ("Item 1", 0)


ITEM_REJECTS = [
    (["", "No id"], "missing id: external_id"),
    (["R" * 600, "t"], "oversized field: external_id"),
    (["R3", "t", "", "", "", "", "", "", "", "", "", "maybe"], "bad type: active"),
]

# An optional field that does not pass: (row, field, reason); the item loads without that field.
ITEM_WARNINGS = [
    (["W1", "t", "", "", "", "", "abc"], "price", "bad type"),
    (["W2", "t", "", "", "", "", "-1"], "price", "bad value"),
    (["W3", "t", "", "", "", "", "NaN"], "price", "bad type"),
    (["W4", "t", "", "", "", "", "1", "EURO"], "currency", "bad value"),
    (["W5", "t", "", "", "", "", "", "", "1.5"], "stock", "bad type"),
    (["W6", "t", "", "", "", "", "", "", "-3"], "stock", "bad value"),
    (["W7", "t", "", "", "", "", "", "", "", "x"], "margin", "bad type"),
    (["W8", "t", "", "", "", "{not json"], "attributes", "bad JSON"),
    (["W9", "t", "", "", "", "[1, 2]"], "attributes", "bad JSON"),
    (["W10", "t", "", "", "[1, 2]"], "category_path", "bad category_path"),
    (["W11", "t", "x" * 70_000], "description", "oversized field"),
    (["W12", "t", "", "", "", "", "", "", "", "", "not a url"], "image_url", "bad URL"),
]


def padded(row: list) -> list:
    return row + [""] * (len(ITEM_HEADER) - len(row))


def stored_warnings(conn, kind: str = "items") -> dict[tuple[int, str], str]:
    rows = conn.execute("select line_number, field, reason from pgrecs.ingest_warnings where kind = %s", (kind,)).fetchall()
    return {(line, field): reason for line, field, reason in rows}


def test_item_rejects_only_for_an_unusable_id_or_flag(cli, conn, tmp_path):
    rows = [good_items(1)[0]] + [padded(r) for r, _ in ITEM_REJECTS] + [["R4", "too", "few"]]
    path = write_csv(tmp_path / "bad_items.csv", ITEM_HEADER, rows)
    result = cli("load", "items", str(path))
    c = counts(result.output)
    assert c == {"inserted": 1, "updated": 0, "unchanged": 0, "rejected": 4}
    expected = {i + 3: reason for i, (_, reason) in enumerate(ITEM_REJECTS)}
    expected[len(ITEM_REJECTS) + 3] = "wrong column count"
    got = rejects(conn, "items")
    assert got == expected
    for reason in got.values():
        assert reason.split(":")[0] in REASONS
    raw = conn.execute("select raw from pgrecs.ingest_rejects where reason = 'bad type: active'").fetchone()[0]
    assert raw.startswith("R3,t,") and raw.rstrip().endswith(",maybe")

    again = cli("load", "items", str(path))  # rejects are upserted, not duplicated
    assert counts(again.output)["rejected"] == c["rejected"]
    assert conn.execute("select count(*) from pgrecs.ingest_rejects").fetchone()[0] == c["rejected"]


def test_optional_item_fields_that_do_not_parse_are_left_empty_with_a_warning(cli, conn, tmp_path):
    rows = [padded(r) for r, _, _ in ITEM_WARNINGS]
    path = write_csv(tmp_path / "warned.csv", ITEM_HEADER, rows)
    result = cli("load", "items", str(path))
    assert result.exit_code == 0, result.output
    assert counts(result.output) == {"inserted": len(rows), "updated": 0, "unchanged": 0, "rejected": 0}
    assert warning_count(result.output) == len(rows)
    assert f"see the warnings: pgrecs warnings --source {path}" in result.output
    assert stored_warnings(conn) == {(i + 2, f): reason for i, (_, f, reason) in enumerate(ITEM_WARNINGS)}
    for _, _, reason in ITEM_WARNINGS:
        assert reason in WARNINGS
    for row, field, _ in ITEM_WARNINGS:
        item = stored_item(conn, row[0])
        assert item[field] == ITEM_DEFAULTS[field], (row[0], field)
        assert item["title"] == "t"
    value = conn.execute("select value from pgrecs.ingest_warnings where field = 'stock'"
                         " and reason = 'bad value'").fetchone()[0]
    assert value == "-3"
    listing = cli("warnings", "--source", str(path))
    assert re.search(r"line\s+2\s+price\s+bad type\s+abc", listing.output), listing.output
    assert re.search(r"line\s+7\s+stock\s+bad value\s+-3", listing.output), listing.output
    assert "no warnings" in cli("warnings", "--kind", "events").output

    # An existing item keeps its stored value when the new one does not parse.
    fixed = write_csv(tmp_path / "fixed.csv", ["external_id", "price", "stock"], [["W1", "4.00", "7"]])
    cli("load", "items", str(fixed))
    broken = write_csv(tmp_path / "broken.csv", ["external_id", "price", "stock"], [["W1", "four", "8"]])
    update = cli("load", "items", str(broken))
    assert counts(update.output) == {"inserted": 0, "updated": 1, "unchanged": 0, "rejected": 0}
    assert conn.execute("select price, stock from pgrecs.items where external_id = 'W1'").fetchone() == (4, 8)


PRICES = [
    ("25.00", 25, None),
    ("$25.00", 25, "USD"),
    ("1,299.00", 1299, None),
    ("$1,299.00", 1299, "USD"),
    ("$10.00 - $500.00", 10, "USD"),
    ("£5", 5, "GBP"),
    ("€12,50", 12.5, "EUR"),
    ("1.299,00 EUR", 1299, "EUR"),
    ("USD 25", 25, "USD"),
    ("1 299,50", 1299.5, None),
    ("CA$12.99", 12.99, "CAD"),
    ("1e2", 100, None),
]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_prices_with_currency_separators_and_ranges_parse(cli, conn, tmp_path, fmt):
    records = [{"external_id": f"P{i}", "price": text} for i, (text, _, _) in enumerate(PRICES)]
    result = cli("load", "items", str(write_records(tmp_path / "prices", fmt, records)))
    assert counts(result.output) == {"inserted": len(PRICES), "updated": 0, "unchanged": 0, "rejected": 0}
    assert warning_count(result.output) == 0
    got = dict(conn.execute("select external_id, (price::float8, currency) from pgrecs.items").fetchall())
    assert {k: (float(p), c) for k, (p, c) in got.items()} == {
        f"P{i}": (float(amount), currency) for i, (_, amount, currency) in enumerate(PRICES)}


def test_price_currency_fills_an_absent_currency_and_the_column_wins(cli, conn, tmp_path):
    cli("load", "items", str(write_csv(tmp_path / "a.csv", ["external_id", "price", "currency"],
                                       [["C1", "9", "EUR"], ["C2", "£3", "EUR"], ["C3", "$4", ""]])))
    assert dict(conn.execute("select external_id, currency from pgrecs.items").fetchall()) == {
        "C1": "EUR", "C2": "EUR", "C3": "USD"}
    # A price file without a currency column keeps the stored currency unless the price names one.
    cli("load", "items", str(write_csv(tmp_path / "b.csv", ["external_id", "price"], [["C1", "10"], ["C2", "$3"]])))
    assert dict(conn.execute("select external_id, currency from pgrecs.items").fetchall()) == {
        "C1": "EUR", "C2": "USD", "C3": "USD"}


def test_price_parser_is_immutable_commented_and_sane(sql):
    assert sql.execute("select (pgrecs.ingest_price_parts('$1,299.00')).*").fetchone() == (1299, "USD")
    assert sql.execute("select (pgrecs.ingest_price_parts('free')).*").fetchone() == (None, None)
    assert sql.execute("select (pgrecs.ingest_price_parts('$-5')).*").fetchone() == (None, None)
    assert sql.execute("select (pgrecs.ingest_price_parts('12 50')).*").fetchone() == (None, None)


def test_repeated_id_keeps_the_last_line_and_supersedes_the_earlier(cli, conn, tmp_path):
    rows = [padded(["D1", "first"]), padded(["D2", "only"]), padded(["D1", "second"]), padded(["D1", "third"])]
    path = write_csv(tmp_path / "dups.csv", ITEM_HEADER, rows)
    result = cli("load", "items", str(path))
    assert counts(result.output) == {"inserted": 2, "updated": 0, "unchanged": 0, "superseded": 2, "rejected": 0}
    assert conn.execute("select title from pgrecs.items where external_id = 'D1'").fetchone()[0] == "third"
    assert rejects(conn) == {}
    assert stored_warnings(conn) == {(2, "external_id"): "superseded by line 5", (4, "external_id"): "superseded by line 5"}
    again = cli("load", "items", str(path))
    assert counts(again.output) == {"inserted": 0, "updated": 0, "unchanged": 2, "superseded": 2, "rejected": 0}


def test_repeated_id_across_batches_is_superseded_not_updated(cli, conn, tmp_path):
    rows = [padded([f"B{i}", f"v{i}"]) for i in range(5)] + [padded(["B1", "later"])]
    path = write_csv(tmp_path / "dups.csv", ITEM_HEADER, rows)
    result = cli("load", "items", str(path), "--batch-size", "2")
    assert counts(result.output) == {"inserted": 5, "updated": 0, "unchanged": 0, "superseded": 1, "rejected": 0}
    assert conn.execute("select title from pgrecs.items where external_id = 'B1'").fetchone()[0] == "later"
    assert stored_warnings(conn) == {(3, "external_id"): "superseded by line 7"}


def test_invalid_utf8_and_nul_are_rejected_with_raw_kept(cli, conn, tmp_path):
    path = tmp_path / "enc.csv"
    path.write_bytes(b"external_id,title\nA1,caf\xc3\xa9\nA2,caf\xe9\nA3,nul\x00here\nA4,ok\n")
    result = cli("load", "items", str(path))
    assert counts(result.output) == {"inserted": 2, "updated": 0, "unchanged": 0, "rejected": 2}
    rows = conn.execute("select line_number, reason, raw from pgrecs.ingest_rejects order by 1").fetchall()
    assert rows == [(3, "invalid UTF-8", "A2,caf\\xe9\n"), (4, "NUL character", "A3,nul\\x00here\n")]
    assert conn.execute("select title from pgrecs.items where external_id = 'A1'").fetchone()[0] == "café"


def test_items_jsonl_gzip_with_mapping(cli, conn, tmp_path):
    records = [{"sku": "J1", "name": "Lamp", "category_path": ["Home", "Light"], "attributes": {"w": 40},
                "price": 12, "active": False},
               {"sku": "J2", "name": "Desk", "category_path": "Office|Furniture", "price": "1e2"},
               {"sku": "J3", "name": {"nested": True}, "price": True},
               "not json at all"]
    path = tmp_path / "items.data.gz"
    text = "".join((json.dumps(r) if isinstance(r, dict) else r) + "\n\n" for r in records)
    with gzip.open(path, "wt") as f:
        f.write(text)
    result = cli("load", "items", str(path), "--format", "jsonl", "--map", "external_id=sku", "--map", "title=name")
    assert result.exit_code == 0, result.output
    assert counts(result.output) == {"inserted": 3, "updated": 0, "unchanged": 0, "rejected": 1}
    assert conn.execute("select category_path, attributes, price, active from pgrecs.items where external_id = 'J1'"
                        ).fetchone() == (["Home", "Light"], {"w": 40}, 12, False)
    assert conn.execute("select category_path from pgrecs.items where external_id = 'J2'").fetchone()[0] == ["Office", "Furniture"]
    assert rejects(conn) == {7: "malformed JSON line"}
    assert stored_warnings(conn) == {(5, "price"): "bad type"}  # J3 loads, without its price
    assert conn.execute("select title, price from pgrecs.items where external_id = 'J3'").fetchone() == ('{"nested": true}', None)


# -- events -----------------------------------------------------------------------------------
def test_events_counts_dedup_and_rejects(cli, conn, tmp_path):
    cli("load", "items", str(items_file(tmp_path, 3)))
    rows = [
        ["u1", "SKU1", "view", "", "2024-01-01T10:00:00Z", "s1"],
        ["u1", "SKU1", "view", "", "2024-01-01T10:00:00Z", "s1"],  # exact duplicate: unchanged
        ["u1", "SKU2", "purchase", "19.99", "1704103200", "s1"],  # epoch seconds
        ["u2", "SKU3", "Click", "", "1704103200000", ""],  # epoch ms, type case-folded
        ["u2", "SKU3", "view", "", "2024-01-01 11:00:00", ""],  # naive: read as UTC
        ["", "SKU1", "view", "", "2024-01-01T10:00:00Z", ""],
        ["u3", "", "view", "", "2024-01-01T10:00:00Z", ""],
        ["u3", "SKU1", "teleport", "", "2024-01-01T10:00:00Z", ""],
        ["u3", "NOPE", "view", "", "2024-01-01T10:00:00Z", ""],
        ["u3", "SKU1", "view", "", "yesterday", ""],
        ["u3", "SKU1", "view", "", "2024-13-45T10:00:00Z", ""],
        ["u3", "SKU1", "rating", "five", "2024-01-01T10:00:00Z", ""],
        ["u3", "SKU1", "", "", "2024-01-01T10:00:00Z", ""],
        ["u3", "SKU1", "view", "", "", ""],
        ["u" * 513, "SKU1", "view", "", "2024-01-01T10:00:00Z", ""],
    ]
    path = events_file(tmp_path, rows)
    result = cli("load", "events", str(path))
    assert result.exit_code == 0, result.output
    # a first load: the repeated line is a duplicate, never "unchanged"
    assert counts(result.output) == {"inserted": 5, "updated": 0, "unchanged": 0, "duplicates": 1, "rejected": 9}
    assert rejects(conn, "events") == {
        7: "missing id: user_id", 8: "missing id: item_id", 9: "unknown event type", 10: "unknown item",
        11: "unparseable timestamp", 12: "unparseable timestamp",
        14: "missing field: event_type", 15: "missing field: occurred_at", 16: "oversized field: user_id",
    }
    assert stored_warnings(conn, "events") == {(13, "value"): "bad type"}  # the rating loads, without its value
    stored = conn.execute("select e.event_type, e.occurred_at, e.value from pgrecs.events e").fetchall()
    assert sorted((t, at.isoformat(), v) for t, at, v in stored) == [
        ("click", "2024-01-01T10:00:00+00:00", None), ("purchase", "2024-01-01T10:00:00+00:00", 19.99),
        ("rating", "2024-01-01T10:00:00+00:00", None), ("view", "2024-01-01T10:00:00+00:00", None),
        ("view", "2024-01-01T11:00:00+00:00", None)]
    assert conn.execute("select count(*) from pgrecs.users").fetchone()[0] == 3

    again = cli("load", "events", str(path))
    assert counts(again.output) == {"inserted": 0, "updated": 0, "unchanged": 5, "duplicates": 1, "rejected": 9}
    assert conn.execute("select count(*) from pgrecs.events").fetchone()[0] == 5


def test_events_jsonl_gzip_event_id_dedup(cli, conn, tmp_path):
    cli("load", "items", str(items_file(tmp_path, 2)))
    records = [
        {"uid": "u1", "item_id": "SKU1", "event_type": "view", "occurred_at": 1704103200, "event_id": "e-1"},
        {"uid": "u1", "item_id": "SKU1", "event_type": "view", "occurred_at": 1704103999, "event_id": "e-1"},
        {"uid": "u1", "item_id": "SKU2", "event_type": "rating", "value": 4.5, "occurred_at": "2024-01-01T12:00:00+02:00"},
    ]
    path = write_jsonl(tmp_path / "events.jsonl.gz", records, gz=True)
    result = cli("load", "events", str(path), "--map", "user_id=uid")
    assert counts(result.output) == {"inserted": 2, "updated": 0, "unchanged": 0, "duplicates": 1, "rejected": 0}
    row = conn.execute("select value, occurred_at from pgrecs.events where event_type = 'rating'").fetchone()
    assert row[0] == 4.5 and row[1].isoformat() == "2024-01-01T10:00:00+00:00"


# -- optional fields: absent, alone, empty, in both formats ---------------------------------------
ITEM_OPTIONAL = {"title": "Mug", "description": "A mug", "brand": "Acme", "category_path": "Home > Kitchen",
                 "attributes": '{"size": 2}', "price": "2.50", "currency": "EUR", "stock": "3", "margin": "0.2",
                 "image_url": "https://img/1.jpg", "active": "false"}
ITEM_STORED = {"title": "Mug", "description": "A mug", "brand": "Acme", "category_path": ["Home", "Kitchen"],
               "attributes": {"size": 2}, "price": 2.5, "currency": "EUR", "stock": 3, "margin": 0.2,
               "image_url": "https://img/1.jpg", "active": False}
ITEM_DEFAULTS = {"title": None, "description": None, "brand": None, "category_path": [], "attributes": {},
                 "price": None, "currency": None, "stock": None, "margin": None, "image_url": None, "active": True}
EVENT_OPTIONAL = {"value": "4.5", "session_id": "s1", "request_id": "r1", "event_id": "e1"}
EVENT_STORED = {"value": 4.5, "session_id": "s1", "request_id": "r1"}
EVENT_DEFAULTS = {"value": None, "session_id": None, "request_id": None}
EVENT_REQUIRED = {"user_id": "U0", "item_id": "I0", "event_type": "purchase", "occurred_at": "2026-10-01T00:00:00Z"}


def write_records(path_stem: Path, fmt: str, records: list[dict]) -> Path:
    """The same records as CSV (header from the first record) or as JSON Lines."""
    if fmt == "csv":
        header = list(records[0])
        return write_csv(path_stem.with_suffix(".csv"), header, [[r[h] for h in header] for r in records])
    return write_jsonl(path_stem.with_suffix(".jsonl"), records)


def stored_item(conn, external_id: str) -> dict:
    names = list(ITEM_DEFAULTS)
    row = conn.execute(f"select {', '.join(names)} from pgrecs.items where external_id = %s", (external_id,)).fetchone()
    values = dict(zip(names, row))
    for key in ("price", "margin"):
        values[key] = None if values[key] is None else float(values[key])
    return values


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("optional", [None, *ITEM_OPTIONAL])
def test_items_load_with_each_optional_field_alone(cli, conn, tmp_path, fmt, optional):
    """Only external_id, or external_id and one optional field: the rest take their defaults."""
    records = [{"external_id": "I0", **({optional: ITEM_OPTIONAL[optional]} if optional else {})}]
    result = cli("load", "items", str(write_records(tmp_path / "items", fmt, records)))
    assert result.exit_code == 0, result.output
    assert counts(result.output) == {"inserted": 1, "updated": 0, "unchanged": 0, "rejected": 0}
    expected = dict(ITEM_DEFAULTS)
    if optional:
        expected[optional] = ITEM_STORED[optional]
    assert stored_item(conn, "I0") == expected


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_items_optional_fields_present_but_empty_take_defaults(cli, conn, tmp_path, fmt):
    records = [{"external_id": "I0", **{name: "" for name in ITEM_OPTIONAL}}]
    result = cli("load", "items", str(write_records(tmp_path / "items", fmt, records)))
    assert counts(result.output) == {"inserted": 1, "updated": 0, "unchanged": 0, "rejected": 0}
    assert stored_item(conn, "I0") == ITEM_DEFAULTS


def stored_event(conn) -> dict:
    row = conn.execute("select u.external_id, i.external_id, e.event_type, e.occurred_at, e.value, e.session_id,"
                       " e.request_id from pgrecs.events as e join pgrecs.users as u using (user_id)"
                       " join pgrecs.items as i using (item_id)").fetchall()
    assert len(row) == 1
    (user, item, event_type, occurred_at, value, session_id, request_id), = row
    assert (user, item, event_type, occurred_at.isoformat()) == ("U0", "I0", "purchase", "2026-10-01T00:00:00+00:00")
    return {"value": value, "session_id": session_id, "request_id": request_id}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("optional", [None, *EVENT_OPTIONAL])
def test_events_load_with_each_optional_field_alone(cli, conn, tmp_path, fmt, optional):
    """user, item, type and time only (a shop export's usual four columns), or with one optional field."""
    cli("load", "items", str(write_csv(tmp_path / "items.csv", ["external_id"], [["I0"]])))
    records = [{**EVENT_REQUIRED, **({optional: EVENT_OPTIONAL[optional]} if optional else {})}]
    path = write_records(tmp_path / "events", fmt, records)
    result = cli("load", "events", str(path))
    assert result.exit_code == 0, result.output + result.stderr
    assert counts(result.output) == {"inserted": 1, "updated": 0, "unchanged": 0, "rejected": 0}
    expected = dict(EVENT_DEFAULTS)
    if optional in EVENT_STORED:
        expected[optional] = EVENT_STORED[optional]
    assert stored_event(conn) == expected
    again = cli("load", "events", str(path))  # the dedup key is the same when the column is absent
    assert counts(again.output) == {"inserted": 0, "updated": 0, "unchanged": 1, "rejected": 0}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_events_optional_fields_present_but_empty_take_defaults(cli, conn, tmp_path, fmt):
    cli("load", "items", str(write_csv(tmp_path / "items.csv", ["external_id"], [["I0"]])))
    records = [{**EVENT_REQUIRED, **{name: "" for name in EVENT_OPTIONAL}}]
    result = cli("load", "events", str(write_records(tmp_path / "events", fmt, records)))
    assert counts(result.output) == {"inserted": 1, "updated": 0, "unchanged": 0, "rejected": 0}
    assert stored_event(conn) == EVENT_DEFAULTS


def test_batches_commit_separately_and_a_rerun_completes(cli, conn, db_url, tmp_path):
    """A batch that fails leaves nothing behind; earlier batches stay; the re-run finishes exactly."""
    cli("load", "items", str(items_file(tmp_path, 3)))
    rows = [[f"u{i}", f"SKU{i % 3 + 1}", "view", "", f"2024-01-01T10:00:{i:02d}Z", ""] for i in range(25)]
    rows.append(["u1", "NOPE", "view", "", "2024-01-01T10:00:00Z", ""])
    path = events_file(tmp_path, rows)
    # A real failure inside the database: a trigger that refuses user u12 (in the second batch).
    conn.execute("""
        create function pg_temp_fail() returns trigger language plpgsql as $$
        begin
            if new.external_id = 'u12' then raise exception 'simulated crash'; end if;
            return new;
        end $$;
        create trigger fail_u12 before insert on pgrecs.users for each row execute function pg_temp_fail();
    """)
    conn.commit()
    failed = cli("load", "events", str(path), "--batch-size", "10", "--workers", "1")
    assert failed.exit_code == 1
    # one line naming the file, the batch and what to do; the database's own text stays out of it
    assert failed.stderr.strip().splitlines() == [
        "error: events.csv: the batch at lines 12-21 failed and was rolled back (earlier batches are kept); "
        "re-run the same command to finish, add -v to see the database's message"]
    assert "Traceback" not in failed.output
    verbose = cli("load", "events", str(path), "--batch-size", "10", "--workers", "1", "-v")
    assert verbose.exit_code == 1 and "simulated crash" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1].startswith("error: events.csv: the batch at lines 12-21")
    assert conn.execute("select count(*) from pgrecs.events").fetchone()[0] == 10
    assert conn.execute("select min(first_line), max(last_line), count(*) from pgrecs.ingest_batches"
                        " where kind = 'events'").fetchone() == (2, 11, 2)  # the first batch, once per run
    conn.execute("drop trigger fail_u12 on pgrecs.users")
    conn.commit()

    result = cli("load", "events", str(path), "--batch-size", "10", "--workers", "2")
    assert counts(result.output) == {"inserted": 15, "updated": 0, "unchanged": 10, "rejected": 1}
    assert conn.execute("select count(*), count(distinct dedup_key) from pgrecs.events").fetchone() == (25, 25)


def test_real_retail_slice(cli, conn, tmp_path, shared_data):
    """The first 2,000 invoice lines of UCI Online Retail, mapped onto items and purchase events."""
    with gzip.open(shared_data / "uci-online-retail" / "online_retail.csv.gz", "rt", newline="") as f:
        lines = [next(f) for _ in range(2001)]
    path = tmp_path / "retail.csv.gz"
    with gzip.open(path, "wt", newline="") as f:
        f.writelines(lines)
    n = 2000
    items = cli("load", "items", str(path), "--map", "external_id=StockCode", "--map", "title=Description",
                "--map", "price=UnitPrice", "--set", "currency=GBP")
    c = counts(items.output)
    assert sum(c.values()) == n
    distinct = len({row["StockCode"] for row in csv.DictReader(lines)})
    assert c["inserted"] == distinct == conn.execute("select count(*) from pgrecs.items").fetchone()[0]
    assert c["superseded"] == n - distinct and c["rejected"] == 0  # repeated stock codes: the last line wins
    events = cli("load", "events", str(path), "--map", "user_id=CustomerID", "--map", "item_id=StockCode",
                 "--map", "occurred_at=InvoiceDate", "--map", "value=Quantity", "--map", "session_id=InvoiceNo",
                 "--set", "event_type=purchase")
    e = counts(events.output)
    assert sum(e.values()) == n
    missing_customer = sum(1 for row in csv.DictReader(lines) if not row["CustomerID"].strip())
    reasons = conn.execute("select reason, count(*) from pgrecs.ingest_rejects where kind = 'events' group by 1").fetchall()
    assert dict(reasons).get("missing id: user_id", 0) == missing_customer
    stored = conn.execute("select count(*) from pgrecs.events").fetchone()[0]
    assert stored == e["inserted"] and e["unchanged"] == 0  # a first load
    assert stored + e.get("duplicates", 0) + e["rejected"] == n


# -- rejects command and API --------------------------------------------------------------------
def test_rejects_command_lists_lines_and_reasons(cli, tmp_path):
    path = write_csv(tmp_path / "r.csv", ["external_id", "active"], [["A", "1"], ["B", "maybe"], ["", "2"]])
    cli("load", "items", str(path))
    listing = cli("rejects", "--source", str(path))
    assert listing.exit_code == 0
    assert re.search(r"line\s+3\s+bad type: active\s+B,maybe", listing.output)
    assert re.search(r"line\s+4\s+missing id: external_id", listing.output)
    assert "line" not in cli("rejects", "--kind", "events").output
    limited = cli("rejects", "--limit", "1")
    assert "(1 of 2 shown" in limited.output


def test_ingest_records_api(conn):
    items = [{"external_id": "A", "title": "Mug", "price": 3.5, "category_path": ["Home"]},
             {"external_id": "B", "price": "free"},
             {"external_id": "C", "title": "Cup", "active": False}]
    result = ingest_records(conn, "items", items, source="test")
    assert (result.inserted, result.updated, result.unchanged, result.rejected) == (3, 0, 0, 0)
    assert result.rejects == []
    assert [(w.line_number, w.field, w.reason, w.value) for w in result.warnings] == [(2, "price", "bad type", "free")]
    assert set(result.ids) == {1, 2, 3}
    assert result.ids[1] == conn.execute("select item_id from pgrecs.items where external_id = 'A'").fetchone()[0]

    again = ingest_records(conn, "items", [{"external_id": "A", "title": "Mug"}, {"external_id": "C", "title": "Cup 2"}])
    assert (again.inserted, again.updated, again.unchanged) == (0, 1, 1)
    assert conn.execute("select price from pgrecs.items where external_id = 'A'").fetchone()[0] == 3.5

    events = [{"user_id": "u1", "item_id": "A", "event_type": "view", "occurred_at": "2024-05-01T00:00:00Z"},
              {"user_id": "u1", "item_id": "A", "event_type": "view", "occurred_at": "2024-05-01T00:00:00Z"},
              {"user_id": "u1", "item_id": "Z", "event_type": "view", "occurred_at": "2024-05-01T00:00:00Z"},
              {"user_id": "u1", "item_id": "A", "event_type": "view", "occurred_at": "2024-05-01", "color": "red"}]
    ev = ingest_records(conn, "events", events)
    assert (ev.inserted, ev.unchanged, ev.duplicates, ev.rejected) == (1, 0, 1, 2)
    assert [(r.line_number, r.reason) for r in ev.rejects] == [(3, "unknown item"), (4, "unknown field: color")]
    assert ev.ids[1] == ev.ids[2] == conn.execute("select event_id from pgrecs.events").fetchone()[0]
    conn.commit()
    stored = conn.execute("select count(*) from pgrecs.ingest_rejects where source = 'api'").fetchone()[0]
    assert stored == 2


def test_ingest_records_inside_a_caller_transaction(db_url):
    """The HTTP layer's connection: two calls in one transaction, time zone left as it was."""
    from pgrecs.db import connect

    with connect(db_url) as c:
        c.execute("set timezone = 'America/New_York'")
        c.commit()
        ingest_records(c, "items", [{"external_id": "A"}])
        ingest_records(c, "events", [{"user_id": "u", "item_id": "A", "event_type": "view",
                                      "occurred_at": "2024-05-01 00:00:00"}])
        assert c.execute("show timezone").fetchone()[0] == "America/New_York"
        c.rollback()
        assert c.execute("select count(*) from pgrecs.items").fetchone()[0] == 0


def test_ingest_helpers_are_commented_with_honest_volatility(sql):
    rows = dict(sql.execute(
        "select p.proname, p.provolatile::text || coalesce(':' || left(obj_description(p.oid, 'pg_proc'), 5), '')"
        " from pg_proc p where p.pronamespace = 'pgrecs'::regnamespace and p.proname like 'ingest%'").fetchall())
    assert {k: v[0] for k, v in rows.items()} == {
        "ingest_time": "s", "ingest_category_path": "i", "ingest_category_path_ok": "i", "ingest_event_key": "s",
        "ingest_price_parts": "i", "ingest_image_url": "i"}
    assert all(":" in v for v in rows.values())  # every helper has a comment
    assert sql.execute("select pgrecs.ingest_time('1704103200000') = pgrecs.ingest_time('2024-01-01T10:00:00Z')"
                        ).fetchone()[0]
    assert sql.execute("select pgrecs.ingest_category_path('A > B|C')").fetchone()[0] == ["A", "B", "C"]


def test_benchmark_runner_row():
    from benchmarks.run import table_row

    row = table_row("load", {"metric": "m", "value": 60000, "unit": "rows/s", "baseline": 600000, "ratio": 0.1,
                             "target": ">= 50,000 rows/s", "met": True, "note": "median of 3 runs"})
    assert row == "| load | m | 60,000 rows/s | 600,000 rows/s | 0.10 | >= 50,000 rows/s (met) | median of 3 runs |"


# -- what a load says: unterminated quotes, --strict, first-load counts ---------------------------
def test_unterminated_quote_costs_only_its_own_line(cli, conn, tmp_path):
    path = tmp_path / "quotes.csv"
    path.write_text('external_id,title\n'
                    'Q1,"Mug\n'  # the quote never closes
                    'Q2,Cup\n'
                    'Q3,"Two\nlines"\n'  # a real multi-line field
                    'Q4,"Bowl"x\n'  # text after a closing quote
                    'Q5,Plate\n'
                    'Q6,"Last\n')  # unterminated at the end of the file
    result = cli("load", "items", str(path))
    assert counts(result.output) == {"inserted": 3, "updated": 0, "unchanged": 0, "rejected": 3}
    assert rejects(conn) == {2: "malformed CSV: unterminated quote", 6: "malformed CSV: ',' expected after '\"'",
                             8: "malformed CSV: unterminated quote"}
    assert dict(conn.execute("select external_id, title from pgrecs.items").fetchall()) == {
        "Q2": "Cup", "Q3": "Two\nlines", "Q5": "Plate"}
    raw = conn.execute("select raw from pgrecs.ingest_rejects where line_number = 2").fetchone()[0]
    assert raw == 'Q1,"Mug\n'


def test_unterminated_quote_in_events_keeps_the_lines_after_it(cli, conn, tmp_path):
    cli("load", "items", str(write_csv(tmp_path / "items.csv", ["external_id"], [["I0"]])))
    lines = ["user_id,item_id,event_type,occurred_at", 'U0,I0,"view,2026-10-01T00:00:00Z']
    lines += [f"U{i},I0,view,2026-10-01T00:00:{i:02d}Z" for i in range(1, 40)]
    path = tmp_path / "events.csv"
    path.write_text("\n".join(lines) + "\n")
    result = cli("load", "events", str(path), "--batch-size", "7")
    assert counts(result.output) == {"inserted": 39, "updated": 0, "unchanged": 0, "rejected": 1}
    assert rejects(conn, "events") == {2: "malformed CSV: unterminated quote"}


def test_strict_exits_non_zero_when_a_record_is_rejected(cli, conn, tmp_path):
    good = write_csv(tmp_path / "good.csv", ["external_id", "price"], [["A", "$1.00"], ["B", "n/a"]])
    ok = cli("load", "items", str(good), "--strict")
    assert ok.exit_code == 0 and warning_count(ok.output) == 1  # a warning is not a reject
    bad = write_csv(tmp_path / "bad.csv", ["external_id", "price"], [["C", "1"], ["", "2"]])
    default = cli("load", "items", str(bad))
    assert default.exit_code == 0 and counts(default.output)["rejected"] == 1
    strict = cli("load", "items", str(bad), "--strict")
    assert strict.exit_code == 3
    assert strict.stderr.strip().splitlines() == [
        f"error: 1 records of {bad} were rejected (--strict); the others loaded"]
    assert conn.execute("select count(*) from pgrecs.items where external_id = 'C'").fetchone()[0] == 1


def test_catalog_with_shop_prices_keeps_its_items_and_their_events(cli, conn, tmp_path):
    """Prices as a real catalog writes them: no item lost to its price, so no event lost as 'unknown item'."""
    prices = ["$25.00", "1,299.00", "$10.00 - $500.00", "", "call us", "$7.99"]
    items = write_csv(tmp_path / "catalog.csv", ["external_id", "title", "price"],
                      [[f"M{i}", f"Magazine {i}", p] for i, p in enumerate(prices)])
    loaded_items = cli("load", "items", str(items))
    assert counts(loaded_items.output) == {"inserted": 6, "updated": 0, "unchanged": 0, "rejected": 0}
    assert warning_count(loaded_items.output) == 1  # "call us"
    events = write_csv(tmp_path / "events.csv", ["user_id", "item_id", "event_type", "occurred_at"],
                       [[f"U{i % 2}", f"M{i}", "purchase", f"2026-10-0{i + 1}T00:00:00Z"] for i in range(6)])
    loaded_events = cli("load", "events", str(events))
    assert counts(loaded_events.output) == {"inserted": 6, "updated": 0, "unchanged": 0, "rejected": 0}
    assert conn.execute("select count(*) from pgrecs.events").fetchone()[0] == 6


def test_events_repeated_across_batches_are_duplicates_on_a_first_load(cli, conn, tmp_path):
    cli("load", "items", str(write_csv(tmp_path / "items.csv", ["external_id"], [["I0"]])))
    rows = [[f"U{i}", "I0", "view", "", f"2026-10-01T00:00:{i:02d}Z", ""] for i in range(10)]
    rows += rows[:4]  # the first four again, in later batches
    path = events_file(tmp_path, rows)
    first = cli("load", "events", str(path), "--batch-size", "3", "--workers", "2")
    assert counts(first.output) == {"inserted": 10, "updated": 0, "unchanged": 0, "duplicates": 4, "rejected": 0}
    assert conn.execute("select sum(inserted), sum(duplicates), sum(unchanged) from pgrecs.ingest_batches where kind = 'events'"
                        ).fetchone() == (10, 4, 0)
    # A re-load stores nothing; a line repeated in another batch then counts as unchanged too
    # (its event is stored, by the earlier load).
    again = cli("load", "events", str(path), "--batch-size", "3", "--workers", "2")
    c = counts(again.output)
    assert c["inserted"] == 0 and c["unchanged"] + c.get("duplicates", 0) == 14 and c["unchanged"] >= 10
