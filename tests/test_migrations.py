"""The schema is owned by alembic: upgrade, downgrade and upgrade again on an empty database."""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg

from pgrecs import migrate

REPO = Path(__file__).resolve().parent.parent


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_schema in ('pgrecs', 'recs')"
        ).fetchall()
    return {r[0] for r in rows}


def test_upgrade_downgrade_upgrade(empty_db_url):
    migrate.upgrade(empty_db_url)
    tables = _tables(empty_db_url)
    assert {"pgrecs.items", "pgrecs.users", "pgrecs.events", "pgrecs.ingest_batches",
            "pgrecs.ingest_rejects", "pgrecs.tenants"} <= tables
    assert migrate.current_revision(empty_db_url) == migrate.head_revision()

    migrate.downgrade(empty_db_url, "base")
    assert _tables(empty_db_url) == set()
    assert migrate.current_revision(empty_db_url) is None

    migrate.upgrade(empty_db_url)
    assert _tables(empty_db_url) == tables


def test_extensions_created(shared_db_url):
    with psycopg.connect(shared_db_url) as conn:
        names = {r[0] for r in conn.execute("select extname from pg_extension")}
    assert {"vector", "pg_trgm", "unaccent"} <= names


def test_every_table_carries_a_tenant(shared_db_url):
    with psycopg.connect(shared_db_url) as conn:
        missing = conn.execute(
            """
            select t.table_name from information_schema.tables t
            where t.table_schema = 'pgrecs' and t.table_type = 'BASE TABLE'
              and t.table_name not in ('tenants', 'event_types', 'embedding_models', 'placement_defaults', 'signals')
              and not exists (select 1 from information_schema.columns c
                              where c.table_schema = t.table_schema and c.table_name = t.table_name
                                and c.column_name = 'tenant_id')
            """
        ).fetchall()
    assert missing == []


def test_sql_files_are_idempotent(db_url):
    """Re-applying sql/ at head twice leaves the schema working (create or replace only)."""
    migrate.upgrade(db_url)
    with psycopg.connect(db_url) as conn:
        migrate.apply_sql_files(conn)
        migrate.apply_sql_files(conn)


def test_sql_files_drop_no_functions():
    """Drops of replaced signatures are run-once work: they belong to migrations, not to sql/."""
    dropping = [path.name for path in migrate.sql_files() if "drop function" in path.read_text().lower()]
    assert dropping == []


def test_upgrade_drops_replaced_signatures(empty_db_url):
    """A database still holding the old signatures loses them on upgrade (migration 0034)."""
    migrate.upgrade(empty_db_url, "0033_embedding_tie_keys")
    old = ["pgrecs.similarity_filter_sql()",
           "pgrecs.similarity_filter_matches(text, boolean, text[], numeric, numeric, boolean, integer)"]
    with psycopg.connect(empty_db_url) as conn:
        for signature in old:
            conn.execute(f"create function {signature} returns text language sql as $$ select 'old' $$")
        conn.execute("create function pgrecs.publish_signals(last_event_ids jsonb, full_refresh boolean)"
                     " returns table (tenant_id text, signal_rows integer) language sql as $$ select 'x', 0 $$")
    migrate.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        for signature in old:
            assert conn.execute("select to_regprocedure(%s)", (signature,)).fetchone()[0] is None, signature
        # the two-argument publish_signals gave way to the one taking an explicit map of lists
        assert conn.execute("select to_regprocedure('pgrecs.publish_signals(jsonb, boolean)')").fetchone()[0] is None
        assert conn.execute("select to_regprocedure('pgrecs.publish_signals(jsonb, boolean, jsonb)')").fetchone()[0]


def test_functions_created_by_migrations_are_defined_in_sql(db_url):
    """A function a migration created is (re)defined in sql/, so the current definition is there."""
    sql_text = "\n".join(path.read_text() for path in migrate.sql_files())
    for name in ("pgrecs.category_key(", "pgrecs.remove_deleted_items_from_neighbors("):
        assert f"create or replace function {name}" in sql_text, name
    with psycopg.connect(db_url) as conn:
        trigger = conn.execute(
            "select t.tgfoid::regproc::text from pg_trigger t"
            " where t.tgrelid = 'pgrecs.items'::regclass and t.tgname = 'items_deleted_leave_neighbors'").fetchone()
        assert trigger == ("pgrecs.remove_deleted_items_from_neighbors",)
        source = conn.execute(
            "select prosrc from pg_proc where oid = 'pgrecs.remove_deleted_items_from_neighbors'::regproc").fetchone()[0]
        assert "'sequence'" in source


def test_public_functions_are_commented(shared_db_url):
    with psycopg.connect(shared_db_url) as conn:
        uncommented = conn.execute(
            """
            select p.oid::regprocedure::text from pg_proc p
            join pg_namespace n on n.oid = p.pronamespace
            where n.nspname = 'recs' and obj_description(p.oid, 'pg_proc') is null
            """
        ).fetchall()
    assert uncommented == []


def test_merged_migrations_are_never_edited():
    """A landed migration is run-once history: its bytes are pinned here when it lands."""
    pinned = {
        "0001_foundation.py": "98b6c9740c49dd64899b2ef0710f5e080386682098b4a61eea9462794ae8572f",
        "0002_semantic.py": "da744339b8f24ae2738f29869cb3392a47d4c87e7d240367503179e059a2db86",
        "0003_signals.py": "1dc4f39315778fc091de04cbb0258984719f20951691a37499d782bbbd61154b",
        "0004_scoring.py": "2b6f30fdb869d50f8027a8e60e955f07a2daa2e39250dc91db0fe6ca69036dd7",
        "0005_experiments.py": "ac8c0dedc1f271ac1fc1141d2f8a40b37e197f4408906b3c01f101a35804c9de",
        "0006_security.py": "83b0b7f9d1b00c9cd211dff3b99bdc7557f2573232f893b1c7b4b0bfc21377f9",
        "0007_embedding_filters.py": "23acc09cb6dced547101a3711eb0f6585e93acc8cd4206782de54a6bb8f634e9",
        "0008_refresh_inputs.py": "2ba81a707c91655346e16193b58075ccddc1a3eae79d85cd2689ee53612af687",
        "0009_category_key.py": "66adaae669c052b15bf44185997cd0da6fd947345d38d4055e3e2e6c9003c635",
        "0010_model_precision.py": "cb7a2704b8772c9d16d609e61421ae071cd5ba1c52c9515ee742347e8ab22e50",
        "0011_neighbor_cleanup.py": "883a7f23ddf29e8d75963379776e98a046a5f9781e0c353b67c58b9b578fbb76",
        "0012_sequence_signal.py": "a24f956e26fdf739bf09c6f45f378622055ea8566baf0b55b5c3294bdac26d69",
    }
    for name, digest in pinned.items():
        path = REPO / "migrations" / "versions" / name
        assert path.exists(), name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{name} was edited after landing"
    on_disk = {p.name for p in (REPO / "migrations" / "versions").glob("*.py")}
    assert set(pinned) <= on_disk


def test_event_references_are_enforced_per_statement(conn):
    """The event log has no per-row foreign keys; statement-level triggers keep the same rules."""
    import pytest

    item = conn.execute("insert into pgrecs.items (external_id, title) values ('i1', 'a') returning item_id").fetchone()[0]
    user = conn.execute("insert into pgrecs.users (external_id) values ('u1') returning user_id").fetchone()[0]
    insert = ("insert into pgrecs.events (user_id, item_id, event_type, occurred_at, dedup_key)"
              " values (%s, %s, %s, now(), gen_random_uuid())")
    conn.execute(insert, (user, item, "view"))
    for bad in [(user, item + 999, "view"), (user + 999, item, "view"), (user, item, "teleport")]:
        with pytest.raises(Exception, match="missing user, item, type or tenant"):
            with conn.transaction():
                conn.execute(insert, bad)
    conn.execute("insert into pgrecs.tenants (tenant_id, name) values ('other', 'Other')")
    other_item = conn.execute(
        "insert into pgrecs.items (tenant_id, external_id) values ('other', 'i1') returning item_id").fetchone()[0]
    with pytest.raises(Exception, match="missing user, item, type or tenant"):
        with conn.transaction():
            conn.execute(insert, (user, other_item, "view"))  # default-tenant event on another tenant's item
    conn.execute("delete from pgrecs.items where item_id = %s", (item,))
    assert conn.execute("select count(*) from pgrecs.events").fetchone()[0] == 0
    conn.execute("insert into pgrecs.items (external_id) values ('i2')")
    item2 = conn.execute("select item_id from pgrecs.items where external_id = 'i2' and tenant_id = 'default'").fetchone()[0]
    conn.execute(insert, (user, item2, "purchase"))
    conn.execute("delete from pgrecs.users where user_id = %s", (user,))
    assert conn.execute("select count(*) from pgrecs.events").fetchone()[0] == 0


def test_deleted_items_leave_the_neighbour_lists(conn):
    """item_neighbors has no per-row foreign keys (migration 0011); a statement trigger on items
    removes a deleted item's own lists and its places in other items' lists, and nothing else."""
    ids = [conn.execute("insert into pgrecs.items (external_id, title) values (%s, 'x') returning item_id",
                        (f"n{i}",)).fetchone()[0] for i in range(4)]
    pairs = [(a, b) for a in ids for b in ids if a != b]
    with conn.cursor() as cur:
        cur.executemany("insert into pgrecs.item_neighbors (signal, item_id, neighbor_item_id, score, rank) "
                        "values (%s, %s, %s, 0.5, 1)", [(s, a, b) for s in ("semantic", "ease") for a, b in pairs])
    assert conn.execute("select count(*) from pgrecs.item_neighbors").fetchone()[0] == 24
    conn.execute("delete from pgrecs.items where item_id = any(%s)", (ids[:2],))
    left = conn.execute("select signal, item_id, neighbor_item_id from pgrecs.item_neighbors order by 1, 2, 3").fetchall()
    assert left == [(s, a, b) for s in ("ease", "semantic") for a, b in [(ids[2], ids[3]), (ids[3], ids[2])]]
    fks = conn.execute("select count(*) from pg_constraint where conrelid = 'pgrecs.item_neighbors'::regclass "
                       "and contype = 'f'").fetchone()[0]
    assert fks == 0


def test_sequence_signal_joins_only_the_seeded_placements(empty_db_url):
    """Migration 0012 adds the next-item signal to the seeded home_for_you and cart placements; a
    placement someone edited keeps its weights, and downgrading takes the signal out again."""
    migrate.upgrade(empty_db_url, "0011_neighbor_cleanup")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("update pgrecs.placements set weights = '{\"ease\": 1}' where placement = 'cart_complete_the_look'")
    migrate.upgrade(empty_db_url)

    def weights():
        with psycopg.connect(empty_db_url) as conn:
            return dict(conn.execute("select placement, weights from pgrecs.placements").fetchall())

    after = weights()
    assert after["home_for_you"]["sequence"] == 1.0
    assert after["cart_complete_the_look"] == {"ease": 1}
    assert "sequence" not in after["pdp_similar"]
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("insert into pgrecs.items (external_id, title) values ('a', 'A'), ('b', 'B')")
        conn.execute("insert into pgrecs.item_neighbors (signal, item_id, neighbor_item_id, score, rank)"
                     " select 'sequence', a.item_id, b.item_id, 0.5, 1 from pgrecs.items a, pgrecs.items b"
                     " where a.external_id = 'a' and b.external_id = 'b'")
        conn.execute("delete from pgrecs.items where external_id = 'a'")  # its lists leave with it
        assert conn.execute("select count(*) from pgrecs.item_neighbors").fetchone()[0] == 0
    migrate.downgrade(empty_db_url, "0011_neighbor_cleanup")
    assert all("sequence" not in w for w in weights().values())
    migrate.downgrade(empty_db_url, "base")


def test_head_revision_agrees_with_alembic():
    from alembic.script import ScriptDirectory

    assert migrate.head_revision() == ScriptDirectory.from_config(migrate.alembic_config("")).get_current_head()
