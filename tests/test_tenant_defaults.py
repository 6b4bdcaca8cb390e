"""A new tenant starts with the default placements, so it is served on its first call."""

from __future__ import annotations

import json

import psycopg
import pytest

from pgrecs import migrate

PLACEMENT_COLUMNS = ("placement, description, weights, pool_sizes, default_filters, fusion, rrf_k, mmr_lambda, "
                     "mmr_pool_factor, max_per_brand, max_per_category, category_level, allow_repeats, history_limit, "
                     "history_events, history_half_life, event_weights, negative_weight, quality_threshold, "
                     "quality_penalty")


def _placements(conn, tenant: str) -> dict:
    rows = conn.execute(f"select {PLACEMENT_COLUMNS} from pgrecs.placements where tenant_id = %s", (tenant,))
    return {r[0]: r for r in rows}


def _defaults(conn) -> dict:
    return {r[0]: r for r in conn.execute(f"select {PLACEMENT_COLUMNS} from pgrecs.placement_defaults")}


def test_the_defaults_are_what_the_default_tenant_was_seeded_with(conn):
    assert set(_defaults(conn)) == {"pdp_similar", "home_for_you", "cart_complete_the_look", "more_like_these"}
    assert _placements(conn, "default") == _defaults(conn)


def test_a_tenant_created_by_keys_create_has_the_default_placements(cli, db_url):
    result = cli("keys", "create", "--tenant", "shop-a", "--scopes", "read")
    assert result.exit_code == 0, result.output
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert _placements(conn, "shop-a") == _defaults(conn)
        # idempotent: nothing added again, and a merchant's edit is never overwritten
        conn.execute("update pgrecs.placements set mmr_lambda = 0.5 where tenant_id = 'shop-a' and placement = 'pdp_similar'")
        conn.execute("delete from pgrecs.placements where tenant_id = 'shop-a' and placement = 'more_like_these'")
        assert conn.execute("select pgrecs.ensure_default_placements('shop-a')").fetchone()[0] == 1
        assert conn.execute("select pgrecs.ensure_default_placements('shop-a')").fetchone()[0] == 0
        assert _placements(conn, "shop-a")["pdp_similar"][7] == pytest.approx(0.5)
        # a session confined to another tenant still seeds the new one
        conn.execute("select set_config('pgrecs.tenant', 'default', false)")
        conn.execute("insert into pgrecs.tenants (tenant_id, name) values ('shop-c', 'Shop C')")
        conn.execute("select set_config('pgrecs.tenant', '', false)")
        assert set(_placements(conn, "shop-c")) == set(_defaults(conn))


def test_the_migration_seeds_the_tenants_that_exist_already(empty_db_url):
    migrate.upgrade(empty_db_url, "0017_model_lineage")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("insert into pgrecs.tenants (tenant_id, name) values ('old-shop', 'Old shop')")
        assert _placements(conn, "old-shop") == {}
    migrate.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        assert _placements(conn, "old-shop") == _defaults(conn)


CATALOG = [
    ("mug-red", "Red enamel camping mug", ["Kitchen", "Mugs"]),
    ("mug-blue", "Blue enamel camping mug", ["Kitchen", "Mugs"]),
    ("mug-tea", "Porcelain tea cup with saucer", ["Kitchen", "Mugs"]),
    ("kettle", "Stainless steel stovetop kettle", ["Kitchen", "Kettles"]),
    ("tent-2p", "Two person hiking tent", ["Outdoor", "Tents"]),
    ("tent-4p", "Four person family camping tent", ["Outdoor", "Tents"]),
    ("bag-down", "Down sleeping bag for cold nights", ["Outdoor", "Sleeping"]),
    ("lamp", "Rechargeable camping lantern", ["Outdoor", "Lights"]),
]


@pytest.mark.slow
def test_a_new_tenant_is_served_on_its_first_calls(cli, db_url, client, tmp_path):
    """`pgrecs keys create --tenant shop-a`, its own catalog and events, then recommendations and
    similar items over HTTP with its key: no placement to copy by hand."""
    key = cli("keys", "create", "--tenant", "shop-a", "--scopes", "read,write").stdout.strip()
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"external_id": e, "title": t, "category_path": c, "stock": 5, "price": 10})
                             + "\n" for e, t, c in CATALOG))
    baskets = [["mug-red", "kettle", "mug-blue"], ["tent-2p", "bag-down", "lamp"], ["tent-4p", "lamp", "bag-down"],
               ["mug-red", "mug-tea", "kettle"], ["tent-2p", "lamp"]]
    events = tmp_path / "events.jsonl"
    events.write_text("".join(
        json.dumps({"user_id": f"u{n}", "item_id": item, "event_type": "purchase", "session_id": f"s{n}",
                    "occurred_at": f"2026-11-{10 + n:02d}T10:{i:02d}:00+00:00"}) + "\n"
        for n, basket in enumerate(baskets) for i, item in enumerate(basket)))
    for step in (["load", "items", str(items)], ["load", "events", str(events)], ["embed"], ["refresh"]):
        result = _tenant_cli(db_url, "shop-a", *step)
        assert result.exit_code == 0, (step, result.output)

    headers = {"X-API-Key": key}
    similar = client.get("/items/mug-red/similar?k=3", headers=headers)
    assert similar.status_code == 200, similar.get_json()
    assert similar.get_json()["results"][0]["external_id"] == "mug-blue"
    for path in ("/items/tent-2p/recommendations?k=3", "/users/u1/recommendations?k=3"):
        response = client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.get_json())
        listed = [r["external_id"] for r in response.get_json()["items"]]
        assert listed and set(listed) <= {e for e, _, _ in CATALOG}, (path, listed)
    # the default tenant's catalog is empty and stays so: shop-a's data went to shop-a
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select count(*) from pgrecs.items where tenant_id = 'default'").fetchone()[0] == 0


def _tenant_cli(db_url: str, tenant: str, *args: str):
    from click.testing import CliRunner

    from pgrecs.cli import main

    return CliRunner().invoke(main, ["--db-url", db_url, "--tenant", tenant, *args], catch_exceptions=False)
