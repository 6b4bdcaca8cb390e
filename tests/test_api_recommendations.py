"""HTTP: recommendations with request ids in the log, events that the next request sees, JSON errors."""

from __future__ import annotations

import pytest

import scoring_world as world
from conftest import TEMPLATE, close_app, create_database, drop_database, new_app


@pytest.fixture
def client(client, conn):
    """The API over the scoring world and user u1 (one view of F); client.ids maps external ids to item ids."""
    ids = world.build(conn)
    uid = world.add_user(conn, "u1")
    world.add_event(conn, uid, ids["F"], "view", "3 hours")
    conn.commit()
    client.ids = ids
    return client


@pytest.fixture(scope="module")
def refusing_app(server_url, template_url):
    """One API over one scoring world for the table of refused requests: a refused request writes nothing."""
    from pgrecs.db import connect

    url = create_database(server_url, TEMPLATE)
    with connect(url, tenant="default") as conn:
        world.build(conn)
    app = new_app(url)
    yield app
    close_app(app)
    drop_database(server_url, url)


@pytest.fixture
def refusing_client(refusing_app):
    with refusing_app.test_client() as c:
        yield c


def test_item_recommendations_are_logged_with_a_request_id(client, conn):
    resp = client.get("/items/A/recommendations?placement=t&k=3&explain=true")
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert [i["external_id"] for i in body["items"]] == ["B", "C", "N"]
    assert body["items"][0]["reasons"] == ["similar description, same brand (Acme)"]
    assert body["items"][0]["contributions"]["semantic"]["anchor_external_id"] == "A"
    logged = conn.execute(
        "select endpoint, placement, k, item_ids, anchor_item_ids from pgrecs.recommendation_requests"
        " where request_id = %s", (body["request_id"],)
    ).fetchone()
    assert logged == ("item", "t", 3, [client.ids[x] for x in ("B", "C", "N")], [client.ids["A"]])


def test_query_filters(client):
    resp = client.get("/items/A/recommendations?placement=t&price_max=90")
    assert [i["external_id"] for i in resp.json["items"]] == ["B", "C", "E"]
    resp = client.get('/items/A/recommendations?placement=t&filters={"brands": ["Bolt"]}')
    assert [i["external_id"] for i in resp.json["items"]] == ["C", "N"]


def test_next_request_sees_posted_event(client, conn):
    before = client.get("/users/u1/recommendations?placement=t").json
    assert "B" not in [i["external_id"] for i in before["items"]]
    resp = client.post("/events", json={"user_id": "u1", "item_id": "A", "event_type": "view",
                                        "request_id": before["request_id"]})
    assert resp.status_code == 201, resp.json
    assert resp.json["inserted"] == 1 and resp.json["rejected"] == []
    after = client.get("/users/u1/recommendations?placement=t").json
    assert after["items"][0]["external_id"] == "B"
    assert after["items"][0]["reasons"][0] == 'similar to "Alpha runner" you viewed'
    stored = conn.execute("select request_id from pgrecs.events where item_id = %s", (client.ids["A"],)).fetchone()
    assert stored == (before["request_id"],)


def test_new_visitor_gets_the_cold_start_list(client, conn):
    conn.execute("update pgrecs.placements set weights = '{\"semantic\": 1, \"popularity\": 0.1}',"
                 " pool_sizes = '{\"popularity\": 3}' where placement = 't'")
    conn.commit()
    resp = client.get("/users/first-time-visitor/recommendations?placement=t&k=3")
    assert resp.status_code == 200, resp.json
    assert [i["external_id"] for i in resp.json["items"]] == ["P", "F", "A"]
    assert all(i["reasons"][0] == "new visitor: popular with everyone" for i in resp.json["items"])
    logged = conn.execute("select endpoint, user_id, item_ids from pgrecs.recommendation_requests"
                          " where request_id = %s", (resp.json["request_id"],)).fetchone()
    assert logged == ("user", None, [client.ids[x] for x in ("P", "F", "A")])
    # a category filter gives the category's popular items
    resp = client.get("/users/first-time-visitor/recommendations?placement=t&k=3&category=Shoes")
    assert [i["external_id"] for i in resp.json["items"]] == ["A", "B", "C"]
    assert resp.json["items"][0]["reasons"][0] == "new visitor: popular in Shoes"
    # examples with a new visitor's user_id are served and logged without a user
    resp = client.post("/recommendations", json={"examples": ["A"], "user_id": "first-time-visitor",
                                                 "placement": "t", "k": 2})
    assert resp.status_code == 200, resp.json


def test_post_events_list_with_rejects(client, conn):
    resp = client.post("/events", json=[
        {"user_id": "u9", "item_id": "B", "event_type": "purchase", "occurred_at": "2026-01-02T03:04:05Z"},
        {"user_id": "u9", "item_id": "NO-SUCH", "event_type": "view", "occurred_at": "2026-01-02T03:04:05Z"},
        {"user_id": "u9", "item_id": "B", "event_type": "teleport", "occurred_at": "2026-01-02T03:04:05Z"},
    ])
    assert resp.status_code == 201, resp.json
    assert resp.json["inserted"] == 1
    assert [r["index"] for r in resp.json["rejected"]] == [1, 2]
    assert all(r["reason"] for r in resp.json["rejected"])
    kept = conn.execute("select count(*) from pgrecs.ingest_rejects where kind = 'events' and source = 'api'").fetchone()
    assert kept == (2,)


def test_post_recommendations(client):
    resp = client.post("/recommendations", json={"examples": ["A"], "negative_examples": ["D"],
                                                 "placement": "t", "k": 2})
    assert resp.status_code == 200, resp.json
    assert [i["external_id"] for i in resp.json["items"]] == ["B", "N"]
    assert resp.json["request_id"]


@pytest.mark.parametrize("method,url,body,status,message", [
    ("get", "/items/NOPE/recommendations", None, 404, "unknown item"),
    ("get", "/items/A/recommendations?placement=nope", None, 404, "unknown placement"),
    ("get", "/items/A/recommendations?k=0", None, 400, "k must be between"),
    ("get", "/items/A/recommendations?k=101", None, 400, "k must be between"),
    ("get", "/items/A/recommendations?k=abc", None, 400, "k must be an integer"),
    ("get", "/items/A/recommendations?price_max=cheap", None, 400, "price_max must be a number"),
    ("get", '/items/A/recommendations?filters={"colour":1}', None, 400, "unknown filter"),
    ("get", "/items/A/recommendations?filters=[", None, 400, "filters must be"),
    ("post", "/recommendations", {"examples": []}, 400, "at least one item"),
    ("post", "/recommendations", {"examples": ["A"], "k": "x"}, 400, "k must be an integer"),
    ("post", "/recommendations", {"examples": ["ZZ"]}, 404, "unknown item"),
    ("post", "/recommendations", {"examples": ["A"], "filters": {"price_min": "x"}}, 400, "price_min"),
    ("post", "/events", {"nonsense": 1}, 400, "unknown field"),
    ("post", "/events", [], 400, "no events"),
])
def test_json_errors(refusing_client, method, url, body, status, message):
    client = refusing_client
    resp = getattr(client, method)(url, json=body) if body is not None else getattr(client, method)(url)
    assert resp.status_code == status, resp.json
    assert message in resp.json["message"]
