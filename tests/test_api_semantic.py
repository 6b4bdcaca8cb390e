"""HTTP: PUT /items/<id>, GET /items/<id>/similar, GET /search on the real model and database."""

from __future__ import annotations

import pytest

from pgrecs.embeddings import worker

CATALOG = {
    "run1": {"title": "Red running shoes", "description": "Lightweight shoes for marathon running and jogging",
             "brand": "Nike", "category_path": "Shoes > Running", "price": 80, "stock": 5},
    "run2": {"title": "Trail running shoes", "description": "Grippy shoes for off-road running on mountain trails",
             "brand": "Salomon", "category_path": "Shoes > Running", "price": 120, "stock": 0},
    "pan1": {"title": "Cast iron skillet", "description": "A heavy pan for searing steak and baking cornbread",
             "brand": "Lodge", "category_path": "Kitchen > Cookware", "price": 30, "stock": 10},
    "pan2": {"title": "Nonstick frying pan", "description": "Pan for eggs and pancakes with a nonstick coating",
             "brand": "Tefal", "category_path": "Kitchen > Cookware", "price": 25, "stock": 3},
}


@pytest.fixture
def app_config():
    return {"TENANT": "default"}


@pytest.fixture
def client(client, minilm):
    """conftest's client, once the embedding model is loaded."""
    return client


@pytest.fixture
def loaded(client, db_url):
    for external_id, record in CATALOG.items():
        response = client.put(f"/items/{external_id}", json=record)
        assert response.status_code == 201, response.get_json()
        assert response.get_json()["embedding_queued"] is True
    worker.drain(db_url, "default", progress=False)
    return client


def test_put_item_upserts_and_requeues_only_on_text_change(loaded, db_url):
    response = loaded.put("/items/pan1", json={**CATALOG["pan1"], "price": 31})
    assert response.status_code == 200 and response.get_json()["status"] == "updated"
    assert response.get_json()["embedding_queued"] is False
    response = loaded.put("/items/pan1", json={**CATALOG["pan1"], "title": "Cast iron grill pan"})
    assert response.get_json()["embedding_queued"] is True
    assert worker.drain(db_url, "default", progress=False).embedded == 1


def test_put_item_rejects_bad_records(client):
    # an unusable required value rejects the record; an optional one is a warning (tests/test_api_limits.py)
    response = client.put("/items/bad", json={"title": "x", "active": "perhaps"})
    assert response.status_code == 400 and "rejected" in response.get_json()["message"]
    assert client.put("/items/bad", data="nope", content_type="application/json").status_code == 400
    assert client.put("/items/bad", json={"external_id": "other"}).status_code == 400


def test_similar_items(loaded):
    body = loaded.get("/items/run1/similar?k=2").get_json()
    assert [r["external_id"] for r in body["results"]] == ["run2", body["results"][1]["external_id"]]
    assert body["results"][0]["rank"] == 1 and body["results"][0]["score"] > body["results"][1]["score"]
    assert isinstance(body["item_id"], int) and body["external_id"] == "run1"
    assert all(isinstance(r["item_id"], int) and r["title"] for r in body["results"])
    body = loaded.get("/items/run1/similar?k=10&category=Kitchen").get_json()
    assert {r["external_id"] for r in body["results"]} == {"pan1", "pan2"}
    body = loaded.get("/items/run1/similar?in_stock=true&price_max=28").get_json()
    assert [r["external_id"] for r in body["results"]] == ["pan2"]


def test_similar_errors(loaded):
    response = loaded.get("/items/nope/similar")
    assert response.status_code == 404 and response.get_json()["detail"] == "unknown item: nope"
    for query in ("k=0", "k=101", "k=abc", "price_min=cheap", "in_stock=maybe", "price_min=5&price_max=1",
                  "price_max=nan", "price_max=", "in_stock=", "k="):
        response = loaded.get(f"/items/run1/similar?{query}")
        assert response.status_code == 400, query
        assert response.is_json and response.get_json()["message"]


def test_search(loaded):
    body = loaded.get("/search?q=frying pan for pancakes&k=1").get_json()
    assert [r["external_id"] for r in body["results"]] == ["pan2"]
    body = loaded.get("/search?q=shoes&k=3&category=Shoes").get_json()
    assert {r["external_id"] for r in body["results"]} == {"run1", "run2"}
    assert loaded.get("/search").status_code == 400
    assert loaded.get("/search?q=" + "a" * 1001).status_code == 400
    assert loaded.get("/search?q=x&k=1000").status_code == 400
    assert loaded.get("/search?q=x&price_max=").status_code == 400
    # an empty text parameter means "no filter", not "category equals the empty string"
    assert loaded.get("/search?q=shoes&k=3&category=").get_json()["results"]


def test_deleted_item_disappears(loaded, db_url):
    from pgrecs.db import connect

    with connect(db_url) as conn:
        conn.execute("update pgrecs.items set active = false where external_id = 'run2'")
    body = loaded.get("/items/run1/similar?k=10").get_json()
    assert "run2" not in {r["external_id"] for r in body["results"]}
