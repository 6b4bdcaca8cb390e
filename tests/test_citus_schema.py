"""What Citus needs of the schema before the tenant tables can be distributed by tenant_id.

A distributed table's primary key and unique keys must contain the distribution column, and so
must a foreign key between two distributed tables; a table that is not distributed is a
reference table (copied to every node). docs/scaling.md names the reference tables and lists
the keys still to change, with their replacement; this test holds the schema and that page to
each other, so a new key without tenant_id, or a key fixed without the page, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "scaling.md"


def _section(name: str) -> str:
    text = DOC.read_text()
    match = re.search(rf"<!-- citus: {name} -->(.*?)<!-- end: {name} -->", text, re.S)
    assert match, f"docs/scaling.md has no '{name}' block"
    return match.group(1)


def documented_reference_tables() -> set[str]:
    return set(re.findall(r"^- `(pgrecs\.\w+)`", _section("reference tables"), re.M))


def documented_keys_to_change() -> set[tuple[str, str]]:
    """(table, constraint or index name) of every row of the 'keys to change' table."""
    return set(re.findall(r"^\| `(pgrecs\.\w+)` \| `(\w+)` \|", _section("keys to change"), re.M))


def schema_report(conn, reference: set[str]) -> dict:
    tables = dict(conn.execute(
        "select format('%I.%I', n.nspname, c.relname),"
        " exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id'"
        "         and not a.attisdropped)"
        " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'pgrecs' and c.relkind in ('r', 'p')").fetchall())
    distributed = {t for t, has_tenant in tables.items() if has_tenant and t not in reference}
    # unique indexes (primary keys and unique constraints included) whose columns lack tenant_id
    keys = conn.execute(
        "select format('%I.%I', n.nspname, c.relname), ic.relname"
        " from pg_index i join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace"
        " join pg_class ic on ic.oid = i.indexrelid"
        " where n.nspname = 'pgrecs' and i.indisunique and not exists ("
        "   select from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id'"
        "   and a.attnum = any (i.indkey::int2[]))").fetchall()
    # foreign keys from one distributed table to another that do not carry tenant_id
    fkeys = conn.execute(
        "select format('%I.%I', n.nspname, c.relname), k.conname, format('%I.%I', fn.nspname, f.relname)"
        " from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace"
        " join pg_class f on f.oid = k.confrelid join pg_namespace fn on fn.oid = f.relnamespace"
        " where k.contype = 'f' and n.nspname = 'pgrecs' and not exists ("
        "   select from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id'"
        "   and a.attnum = any (k.conkey))").fetchall()
    nullable = conn.execute(
        "select format('%I.%I', n.nspname, c.relname) from pg_attribute a join pg_class c on c.oid = a.attrelid"
        " join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'pgrecs' and a.attname = 'tenant_id' and not a.attnotnull and c.relkind in ('r', 'p')"
    ).fetchall()
    return {
        "tables": tables,
        "distributed": distributed,
        "keys_without_tenant": {(t, name) for t, name in keys if t in distributed},
        "fkeys_without_tenant": {(t, name) for t, name, target in fkeys if t in distributed and target in distributed},
        "nullable_tenant": {t for (t,) in nullable if t in distributed},
    }


def test_schema_meets_citus_or_the_gap_is_documented(conn):
    reference = documented_reference_tables()
    report = schema_report(conn, reference)
    # every table is distributed by tenant_id or a documented reference table, and both lists are real
    assert reference <= set(report["tables"]), reference - set(report["tables"])
    untenanted = {t for t, has_tenant in report["tables"].items() if not has_tenant}
    assert untenanted <= reference, f"tables without tenant_id that are not documented reference tables: {untenanted - reference}"
    assert "pgrecs.items" in report["distributed"] and "pgrecs.events" in report["distributed"]
    assert report["nullable_tenant"] == set()
    # every key Citus would refuse on a distributed table is in the page's list, and nothing else is
    pending = report["keys_without_tenant"] | report["fkeys_without_tenant"]
    documented = documented_keys_to_change()
    assert pending - documented == set(), f"keys without tenant_id missing from docs/scaling.md: {sorted(pending - documented)}"
    assert documented - pending == set(), f"docs/scaling.md lists keys that are fine now: {sorted(documented - pending)}"
