"""The one filter vocabulary: pgrecs.parse_filters key by key, its errors, and the same filter giving
consistent lists on /items/X/similar and /items/X/recommendations."""

from __future__ import annotations

import json
from urllib.parse import quote

import psycopg
import pytest
from psycopg.types.json import Jsonb

import scoring_world as world

FIELDS = ("category", "brand", "brands", "exclude_brands", "price_min", "price_max", "in_stock", "exclude")
NOTHING = dict.fromkeys(FIELDS)


def parsed(sql, filters) -> dict:
    row = sql.execute(f"select {', '.join(f'f.{name}' for name in FIELDS)} from pgrecs.parse_filters(%s) as f",
                      (filters if filters is None else Jsonb(filters),)).fetchone()
    return dict(zip(FIELDS, row))


@pytest.mark.parametrize("filters,expected", [
    (None, {}),
    ({}, {}),
    ({"category": "Books > Fiction"}, {"category": ["Books", "Fiction"]}),
    ({"category": " Books >Fiction "}, {"category": ["Books", "Fiction"]}),
    ({"category": "Running"}, {"category": ["Running"]}),
    ({"category": ["Books", "Fiction"]}, {"category": ["Books", "Fiction"]}),
    ({"category": None}, {}),
    ({"brand": "Acme"}, {"brand": "Acme"}),
    ({"brands": ["Acme", "Bolt"]}, {"brands": ["Acme", "Bolt"]}),
    ({"exclude_brands": ["Acme"]}, {"exclude_brands": ["Acme"]}),
    ({"price_min": 10, "price_max": 20.5}, {"price_min": 10, "price_max": 20.5}),
    ({"price_min": 5, "price_max": 5}, {"price_min": 5, "price_max": 5}),
    ({"in_stock": True}, {"in_stock": True}),
    ({"in_stock": False}, {}),  # false asks for nothing, as it always did for recommendations
    ({"exclude": [3, 7]}, {"exclude": [3, 7]}),
    ({"brand": None, "brands": None, "exclude": None, "price_min": None}, {}),
])
def test_parse_filters_each_key(sql, filters, expected):
    got = parsed(sql, filters)
    assert {k: (float(v) if k.startswith("price") and v is not None else v) for k, v in got.items()} == {**NOTHING, **expected}


@pytest.mark.parametrize("filters,message", [
    ([1], "filters must be a JSON object"),
    ("x", "filters must be a JSON object"),
    ({"colour": "red"}, "unknown filter: colour (known: brand, brands, category, exclude, exclude_brands, "
                        "in_stock, price_max, price_min)"),
    ({"active": False}, "unknown filter: active (known: "),
    ({"category": 3}, 'filter category must be a category path: "A > B" or an array of names'),
    ({"category": ""}, 'filter category must be a category path'),
    ({"category": "Books > "}, 'filter category must be a category path'),
    ({"category": []}, 'filter category must be a category path'),
    ({"category": ["Books", 2]}, 'filter category must be a category path'),
    ({"brand": ["Acme"]}, "filter brand must be a string"),
    ({"brands": "Acme"}, "filter brands must be an array of brands (strings)"),
    ({"exclude_brands": [1]}, "filter exclude_brands must be an array of brands (strings)"),
    ({"price_min": "cheap"}, "filter price_min must be a number"),
    ({"price_max": True}, "filter price_max must be a number"),
    ({"price_min": 30, "price_max": 20}, "filter price_min must not exceed price_max"),
    ({"in_stock": "yes"}, "filter in_stock must be true or false"),
    ({"exclude": 5}, "filter exclude must be an array of internal item ids"),
    ({"exclude": ["5"]}, "filter exclude must be an array of internal item ids"),
    ({"exclude": [1.5]}, "filter exclude must be an array of internal item ids"),
    ({"exclude": [0]}, "filter exclude must be an array of internal item ids"),
])
def test_parse_filters_errors(sql, filters, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as raised:
        sql.execute("select pgrecs.parse_filters(%s)", (Jsonb(filters),))
    assert raised.value.sqlstate == "22023"
    text = raised.value.diag.message_primary
    assert text.startswith(message) and "\n" not in text


def test_parse_filters_is_immutable_and_commented(sql):
    row = sql.execute("select p.provolatile, p.proparallel, obj_description(p.oid, 'pg_proc') from pg_catalog.pg_proc p"
                      " where p.oid = 'pgrecs.parse_filters(jsonb)'::regprocedure").fetchone()
    assert row[0] == "i" and row[1] == "s" and row[2]
    # the dialects it replaces are gone
    for old in ("pgrecs.check_filters(jsonb)", "pgrecs.check_similarity_filters(jsonb)", "pgrecs.filter_category(jsonb)"):
        assert sql.execute("select to_regprocedure(%s)", (old,)).fetchone()[0] is None


# ------------------------------------------------------------------------------------------------
# The same filter on /items/X/similar and /items/X/recommendations
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def app_config():
    return {"EMBEDDING_MODEL": "test-3d"}  # the scoring world's model (placement t ranks with it)


@pytest.fixture
def client(client, conn):
    """The API over the scoring world (3-d embeddings for A, B, C, E, N; semantic lists)."""
    client.ids = world.build(conn)
    conn.commit()
    return client


def satisfies(external_id: str, filters: dict) -> bool:
    _, brand, path, price, stock, active, _ = world.ITEMS[external_id]
    category = filters.get("category")
    prefix = [p.strip() for p in category.split(">")] if isinstance(category, str) else category
    return (active
            and (prefix is None or path[:len(prefix)] == prefix)
            and (filters.get("price_min") is None or price >= filters["price_min"])
            and (filters.get("price_max") is None or price <= filters["price_max"])
            and (not filters.get("in_stock") or stock > 0)
            and (filters.get("brand") is None or brand == filters["brand"])
            and (filters.get("brands") is None or brand in filters["brands"])
            and (filters.get("exclude_brands") is None or brand not in filters["exclude_brands"]))


def both(client, query: str) -> tuple[list[str], list[str]]:
    similar = client.get(f"/items/A/similar?k=10&{query}")
    recommended = client.get(f"/items/A/recommendations?placement=t&k=10&{query}")
    assert similar.status_code == 200, similar.get_json()
    assert recommended.status_code == 200, recommended.get_json()
    return ([r["external_id"] for r in similar.get_json()["results"]],
            [r["external_id"] for r in recommended.get_json()["items"]])


@pytest.mark.parametrize("filters", [
    {"category": "Shoes > Running", "price_max": 95},
    {"category": "Shoes", "price_min": 85},
    {"category": ["Shoes", "Running"], "brands": ["Bolt"]},
    {"category": "Shoes", "exclude_brands": ["Acme"]},
    {"brand": "Acme", "in_stock": True},
])
def test_same_filter_same_meaning_on_similar_and_recommendations(client, filters):
    similar, recommended = both(client, "filters=" + quote(json.dumps(filters)))
    assert similar and recommended
    assert all(satisfies(x, filters) for x in similar), similar
    assert all(satisfies(x, filters) for x in recommended), recommended


def test_plain_parameters_mean_the_same_on_both(client):
    similar, recommended = both(client, "category=" + quote("Shoes > Running") + "&price_max=95")
    assert set(similar) == {"B", "C", "N"} and set(recommended) == {"B", "C", "N"}
    # a bare name is a one-level prefix: "Running" is not a top-level category, so nothing on both
    assert both(client, "category=Running") == ([], [])
    assert both(client, "category=" + quote("Shoes > Trail") + "&price_min=1000") == ([], [])


def test_exclude_honoured_on_both(client):
    every = {"category": "Shoes"}
    similar, recommended = both(client, "filters=" + quote(json.dumps(every)))
    assert "B" in similar and "B" in recommended
    without_b = {**every, "exclude": [client.ids["B"]]}
    similar, recommended = both(client, "filters=" + quote(json.dumps(without_b)))
    assert similar and recommended and "B" not in similar and "B" not in recommended


def test_bad_filter_is_one_400_on_both(client):
    for query in ("price_min=30&price_max=20", 'filters={"colour": 1}', 'filters={"category": ["Shoes", ""]}'):
        for path in ("/items/A/similar", "/items/A/recommendations"):
            response = client.get(f"{path}?{query}")
            assert response.status_code == 400, (path, query, response.get_json())
