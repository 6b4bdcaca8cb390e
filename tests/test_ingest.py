"""Loss-free ingestion: counts add up, re-runs change nothing, every reject reason is kept."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import pytest

from pgrecs.ingest import REASONS, ingest_records

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
    found = dict(re.findall(r"^\s+(inserted|updated|unchanged|rejected)\s+([\d,]+)$", output, re.M))
    return {k: int(v.replace(",", "")) for k, v in found.items()}


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
    (["R2", "t", "", "", "", "", "abc"], "bad type: price"),
    (["R3", "t", "", "", "", "", "-1"], "bad value: price"),
    (["R4", "t", "", "", "", "", "1", "EURO"], "bad value: currency"),
    (["R5", "t", "", "", "", "", "", "", "1.5"], "bad type: stock"),
    (["R6", "t", "", "", "", "", "", "", "", "", "", "maybe"], "bad type: active"),
    (["R7", "t", "", "", "", "", "", "", "", "x"], "bad type: margin"),
    (["R8", "t", "", "", "", "{not json"], "bad attributes JSON"),
    (["R9", "t", "", "", "", "[1, 2]"], "bad attributes JSON"),
    (["R10", "t", "", "", "[1, 2]"], "bad category_path"),
    (["R11", "t", "x" * 70_000], "oversized field: description"),
    (["R" * 600, "t"], "oversized field: external_id"),
    (["R13", "t", "", "", "", "", "NaN"], "bad value: price"),
]


def test_every_item_reject_reason(cli, conn, tmp_path):
    rows = [r + [""] * (len(ITEM_HEADER) - len(r)) for r, _ in ITEM_REJECTS]
    rows.insert(0, good_items(1)[0])
    rows.append(["R14", "too", "few"])  # wrong column count
    rows.append(good_items(2)[1])
    rows.append(["SKU2", "Item 2 again"] + [""] * 10)  # the later line wins
    path = write_csv(tmp_path / "bad_items.csv", ITEM_HEADER, rows)
    result = cli("load", "items", str(path))
    c = counts(result.output)
    assert sum(c.values()) == loaded(result.output) == len(rows)
    assert c["inserted"] == 2
    got = rejects(conn, "items")
    expected = {i + 3: reason for i, (_, reason) in enumerate(ITEM_REJECTS)}
    expected[len(ITEM_REJECTS) + 3] = "wrong column count"
    expected[len(ITEM_REJECTS) + 4] = "duplicate id: external_id"
    assert got == expected
    assert conn.execute("select title from pgrecs.items where external_id = 'SKU2'").fetchone()[0] == "Item 2 again"
    raw = conn.execute("select raw from pgrecs.ingest_rejects where reason = 'bad type: price'").fetchone()[0]
    assert raw.startswith("R2,t,,,,,abc")
    for reason in got.values():
        assert reason.split(":")[0] in REASONS

    again = cli("load", "items", str(path))  # rejects are upserted, not duplicated
    assert counts(again.output)["rejected"] == c["rejected"]
    assert conn.execute("select count(*) from pgrecs.ingest_rejects").fetchone()[0] == c["rejected"]


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
    assert counts(result.output) == {"inserted": 2, "updated": 0, "unchanged": 0, "rejected": 2}
    assert conn.execute("select category_path, attributes, price, active from pgrecs.items where external_id = 'J1'"
                        ).fetchone() == (["Home", "Light"], {"w": 40}, 12, False)
    assert conn.execute("select category_path from pgrecs.items where external_id = 'J2'").fetchone()[0] == ["Office", "Furniture"]
    assert rejects(conn) == {5: "bad type: price", 7: "malformed JSON line"}


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
    assert counts(result.output) == {"inserted": 4, "updated": 0, "unchanged": 1, "rejected": 10}
    assert rejects(conn, "events") == {
        7: "missing id: user_id", 8: "missing id: item_id", 9: "unknown event type", 10: "unknown item",
        11: "unparseable timestamp", 12: "unparseable timestamp", 13: "bad type: value",
        14: "missing field: event_type", 15: "missing field: occurred_at", 16: "oversized field: user_id",
    }
    times = conn.execute("select e.event_type, e.occurred_at from pgrecs.events e order by e.event_id").fetchall()
    assert [t.isoformat() for _, t in times] == ["2024-01-01T10:00:00+00:00", "2024-01-01T10:00:00+00:00",
                                                 "2024-01-01T10:00:00+00:00", "2024-01-01T11:00:00+00:00"]
    assert [t for t, _ in times] == ["view", "purchase", "click", "view"]
    assert conn.execute("select count(*) from pgrecs.users").fetchone()[0] == 2

    again = cli("load", "events", str(path))
    assert counts(again.output) == {"inserted": 0, "updated": 0, "unchanged": 5, "rejected": 10}
    assert conn.execute("select count(*) from pgrecs.events").fetchone()[0] == 4


def test_events_jsonl_gzip_event_id_dedup(cli, conn, tmp_path):
    cli("load", "items", str(items_file(tmp_path, 2)))
    records = [
        {"uid": "u1", "item_id": "SKU1", "event_type": "view", "occurred_at": 1704103200, "event_id": "e-1"},
        {"uid": "u1", "item_id": "SKU1", "event_type": "view", "occurred_at": 1704103999, "event_id": "e-1"},
        {"uid": "u1", "item_id": "SKU2", "event_type": "rating", "value": 4.5, "occurred_at": "2024-01-01T12:00:00+02:00"},
    ]
    path = write_jsonl(tmp_path / "events.jsonl.gz", records, gz=True)
    result = cli("load", "events", str(path), "--map", "user_id=uid")
    assert counts(result.output) == {"inserted": 2, "updated": 0, "unchanged": 1, "rejected": 0}
    row = conn.execute("select value, occurred_at from pgrecs.events where event_type = 'rating'").fetchone()
    assert row[0] == 4.5 and row[1].isoformat() == "2024-01-01T10:00:00+00:00"


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
    assert "lines 12-21" in failed.stderr and "simulated crash" in failed.stderr
    assert "Traceback" not in failed.output + failed.stderr
    assert conn.execute("select count(*) from pgrecs.events").fetchone()[0] == 10
    assert conn.execute("select min(first_line), max(last_line), count(*) from pgrecs.ingest_batches"
                        " where kind = 'events'").fetchone() == (2, 11, 1)
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
    assert c["rejected"] == n - distinct  # repeated stock codes: the last line wins
    events = cli("load", "events", str(path), "--map", "user_id=CustomerID", "--map", "item_id=StockCode",
                 "--map", "occurred_at=InvoiceDate", "--map", "value=Quantity", "--map", "session_id=InvoiceNo",
                 "--set", "event_type=purchase")
    e = counts(events.output)
    assert sum(e.values()) == n
    missing_customer = sum(1 for row in csv.DictReader(lines) if not row["CustomerID"].strip())
    reasons = conn.execute("select reason, count(*) from pgrecs.ingest_rejects where kind = 'events' group by 1").fetchall()
    assert dict(reasons).get("missing id: user_id", 0) == missing_customer
    stored = conn.execute("select count(*) from pgrecs.events").fetchone()[0]
    assert stored == e["inserted"] and stored + e["unchanged"] + e["rejected"] == n


# -- rejects command and API --------------------------------------------------------------------
def test_rejects_command_lists_lines_and_reasons(cli, tmp_path):
    path = write_csv(tmp_path / "r.csv", ["external_id", "price"], [["A", "1"], ["B", "abc"], ["", "2"]])
    cli("load", "items", str(path))
    listing = cli("rejects", "--source", str(path))
    assert listing.exit_code == 0
    assert re.search(r"line\s+3\s+bad type: price\s+B,abc", listing.output)
    assert re.search(r"line\s+4\s+missing id: external_id", listing.output)
    assert "line" not in cli("rejects", "--kind", "events").output
    limited = cli("rejects", "--limit", "1")
    assert "(1 of 2 shown" in limited.output


def test_ingest_records_api(conn):
    items = [{"external_id": "A", "title": "Mug", "price": 3.5, "category_path": ["Home"]},
             {"external_id": "B", "price": "free"},
             {"external_id": "C", "title": "Cup", "active": False}]
    result = ingest_records(conn, "items", items, source="test")
    assert (result.inserted, result.updated, result.unchanged, result.rejected) == (2, 0, 0, 1)
    assert [(r.line_number, r.reason) for r in result.rejects] == [(2, "bad type: price")]
    assert json.loads(result.rejects[0].raw) == items[1]
    assert set(result.ids) == {1, 3}
    assert result.ids[1] == conn.execute("select item_id from pgrecs.items where external_id = 'A'").fetchone()[0]

    again = ingest_records(conn, "items", [{"external_id": "A", "title": "Mug"}, {"external_id": "C", "title": "Cup 2"}])
    assert (again.inserted, again.updated, again.unchanged) == (0, 1, 1)
    assert conn.execute("select price from pgrecs.items where external_id = 'A'").fetchone()[0] == 3.5

    events = [{"user_id": "u1", "item_id": "A", "event_type": "view", "occurred_at": "2024-05-01T00:00:00Z"},
              {"user_id": "u1", "item_id": "A", "event_type": "view", "occurred_at": "2024-05-01T00:00:00Z"},
              {"user_id": "u1", "item_id": "Z", "event_type": "view", "occurred_at": "2024-05-01T00:00:00Z"},
              {"user_id": "u1", "item_id": "A", "event_type": "view", "occurred_at": "2024-05-01", "color": "red"}]
    ev = ingest_records(conn, "events", events)
    assert (ev.inserted, ev.unchanged, ev.rejected) == (1, 1, 2)
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


def test_ingest_helpers_are_commented_with_honest_volatility(conn):
    rows = dict(conn.execute(
        "select p.proname, p.provolatile::text || coalesce(':' || left(obj_description(p.oid, 'pg_proc'), 5), '')"
        " from pg_proc p where p.pronamespace = 'pgrecs'::regnamespace and p.proname like 'ingest%'").fetchall())
    assert {k: v[0] for k, v in rows.items()} == {
        "ingest_time": "s", "ingest_category_path": "i", "ingest_category_path_ok": "i", "ingest_event_key": "s"}
    assert all(":" in v for v in rows.values())  # every helper has a comment
    assert conn.execute("select pgrecs.ingest_time('1704103200000') = pgrecs.ingest_time('2024-01-01T10:00:00Z')"
                        ).fetchone()[0]
    assert conn.execute("select pgrecs.ingest_category_path('A > B|C')").fetchone()[0] == ["A", "B", "C"]


def test_benchmark_runner_row():
    from benchmarks.run import table_row

    row = table_row("load", {"metric": "m", "value": 60000, "unit": "rows/s", "baseline": 600000, "ratio": 0.1,
                             "target": ">= 50,000 rows/s", "met": True, "note": "median of 3 runs"})
    assert row == "| load | m | 60,000 rows/s | 600,000 rows/s | 0.10 | >= 50,000 rows/s (met) | median of 3 runs |"
