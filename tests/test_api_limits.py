"""Limits and bad input: every bad request gets a 4xx problem+json, never a 5xx.

The parametrised cases below are the table of bad inputs in the README.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from flask import g

from conftest import TEMPLATE, close_app, create_database, drop_database, new_app


CONFIG = {"MAX_CONTENT_LENGTH": 64 * 1024, "STATEMENT_TIMEOUT_MS": 200}


def _add_test_routes(app) -> None:
    def slow():
        from pgrecs.api.database import get_conn

        get_conn().execute("select pg_sleep(2)")
        return {"slept": True}

    def broken():
        raise RuntimeError("secret internals")

    def lost():
        """An answer built, then the server ends the request's session before its commit."""
        from flask import current_app

        from pgrecs.api.database import get_conn

        pid = get_conn().execute("select pg_backend_pid()").fetchone()[0]
        with psycopg.connect(current_app.config["DATABASE_URL"], autocommit=True) as admin:
            admin.execute("select pg_terminate_backend(%s, 5000)", (pid,))
        return {"answered": True}

    app.add_url_rule("/test/slow", view_func=slow)
    app.add_url_rule("/test/broken", view_func=broken)
    app.add_url_rule("/test/lost", view_func=lost)


@pytest.fixture
def app_config():
    return CONFIG


@pytest.fixture
def app(app):
    """The API with a 64 KiB body limit, a 200 ms statement timeout, and a slow and a broken route."""
    _add_test_routes(app)
    return app


@pytest.fixture
def client(client, conn):
    """The API over a catalog of one item, A."""
    conn.execute("insert into pgrecs.items (external_id, title) values ('A', 'An item')")
    conn.commit()
    return client


@pytest.fixture(scope="module")
def table_app(server_url, template_url):
    """The same API over one database for the whole table of bad inputs: every case is refused, or
    read-only, or leaves only a rejected event behind, so no case changes what another one reads."""
    url = create_database(server_url, TEMPLATE)
    with psycopg.connect(url) as conn:
        conn.execute("insert into pgrecs.items (external_id, title) values ('A', 'An item')")
    app = new_app(url, **CONFIG)
    _add_test_routes(app)
    yield app
    close_app(app)
    drop_database(server_url, url)


@pytest.fixture
def table_client(table_app):
    with table_app.test_client() as c:
        yield c


BIG = "x" * (70 * 1024)

# (what, method, path, kwargs, status, words in detail)
CASES = [
    ("malformed JSON", "post", "/events", {"data": '{"user_id": ', "content_type": "application/json"}, 400,
     "malformed JSON"),
    ("JSON with trailing garbage", "post", "/recommendations", {"data": '{"examples": ["A"]} x',
                                                                "content_type": "application/json"}, 400, "malformed"),
    ("invalid UTF-8 body", "put", "/items/A", {"data": b'{"title": "\xff\xfe"}', "content_type": "application/json"},
     400, "malformed JSON"),
    ("unpaired surrogate", "put", "/items/A", {"data": '{"title": "\\ud800"}', "content_type": "application/json"},
     400, "surrogate"),
    ("NUL in a JSON string", "post", "/events", {"json": {"user_id": "u\u0000", "item_id": "A", "event_type": "view"}},
     400, "NUL"),
    ("NUL in the path", "get", "/items/A%00/similar", {}, 400, "NUL"),
    ("NUL in the query", "get", "/search?q=a%00b", {}, 400, "NUL"),
    ("invalid UTF-8 in the query", "get", "/search?q=%ff%fe&k=1", {}, 200, ""),  # decoded as U+FFFD
    ("body over the size limit", "put", "/items/A", {"json": {"title": BIG}}, 413, "larger than"),
    ("k = 0", "get", "/items/A/similar?k=0", {}, 400, "between 1 and 100"),
    ("k = 101", "get", "/items/A/recommendations?k=101", {}, 400, "between 1 and 100"),
    ("k huge", "get", "/items/A/similar?k=99999999999999999999999", {}, 400, "between 1 and 100"),
    ("k not a number", "get", "/search?q=x&k=ten", {}, 400, "integer"),
    ("k as a boolean in JSON", "post", "/recommendations", {"json": {"examples": ["A"], "k": True}}, 400, "integer"),
    ("k fractional in JSON", "post", "/recommendations", {"json": {"examples": ["A"], "k": 2.5}}, 400, "integer"),
    ("number with 5,000 digits", "post", "/recommendations", {"data": '{"examples": ["A"], "k": ' + "9" * 5000 + "}",
                                                             "content_type": "application/json"}, 400, "malformed"),
    ("number 1e999 (infinite)", "put", "/items/A", {"data": '{"price": 1e999}', "content_type": "application/json"},
     400, "finite"),
    ("NaN literal", "put", "/items/A", {"data": '{"price": NaN}', "content_type": "application/json"}, 400, "finite"),
    ("list of 1,001 events", "post", "/events",
     {"json": [{"user_id": "u", "item_id": "A", "event_type": "view"}] * 1001}, 400, "1000"),
    ("JSON nested 40 deep", "post", "/recommendations", {"data": "[" * 40 + "]" * 40,
                                                         "content_type": "application/json"}, 400, "nested"),
    ("wrong type: body is a string", "post", "/events", {"json": "hello"}, 400, "event object"),
    ("wrong type: examples not a list", "post", "/recommendations", {"json": {"examples": "A"}}, 400, "list"),
    ("unknown field", "post", "/events", {"json": {"user_id": "u", "item_id": "A", "event_type": "view", "x": 1}},
     400, "unknown field"),
    ("unknown item id", "get", "/items/does-not-exist/recommendations", {}, 404, "unknown item"),
    ("unknown item id for similar items", "get", "/items/nobody/similar", {}, 404, "unknown item: nobody"),
    ("SQL injection in a path id", "get", "/items/A'%20or%20'1'='1/similar", {}, 404, "unknown item"),
    ("SQL injection in a filter", "get", "/items/A/recommendations?category=x'%3Bdrop%20table%20pgrecs.items--", {},
     200, ""),
    ("unknown placement", "get", "/items/A/recommendations?placement=nope", {}, 404, "placement"),
    ("price_min > price_max", "get", "/items/A/similar?price_min=5&price_max=1", {}, 400, "price_min"),
    ("unknown route", "get", "/admin/../../etc/passwd", {}, 404, ""),
    ("wrong method", "delete", "/items/A", {}, 405, ""),
    ("too many query parameters", "get", "/search?" + "&".join(f"p{i}=1" for i in range(60)), {}, 400, "at most 50"),
    # request schema validation (app/api/schemas.py): one line naming each bad field
    ("unknown query parameter (typo)", "get", "/items/A/similar?catgory=Shoes", {}, 400,
     "unknown query parameter: catgory"),
    ("k negative", "get", "/search?q=x&k=-3", {}, 400, "k must be between 1 and 100"),
    ("wrong type: price_max is text", "get", "/items/A/recommendations?price_max=cheap", {}, 400,
     "price_max must be a number"),
    ("huge price", "get", "/items/A/similar?price_min=1e300", {}, 400, "price_min must be between -1e12 and 1e12"),
    ("infinite price", "get", "/items/A/similar?price_max=inf", {}, 400, "price_max must be a finite number"),
    ("wrong type: in_stock=maybe", "get", "/items/A/similar?in_stock=maybe", {}, 400, "in_stock must be true or false"),
    ("two bad query parameters", "get", "/items/A/recommendations?in_stock=maybe&price_min=x", {}, 400,
     "price_min must be a number; in_stock must be true or false"),
    ("filters not JSON", "get", "/items/A/recommendations?filters=%7Bnope", {}, 400, "filters must be a JSON object"),
    ("unknown filter", "get", '/items/A/recommendations?filters={"colour":"red"}', {}, 400, "unknown filter: colour"),
    ("wrong type inside filters", "post", "/recommendations", {"json": {"examples": ["A"], "filters": {"brands": "Acme"}}},
     400, "filters.brands must be a list of brands"),
    ("q missing", "get", "/search?k=3", {}, 400, "q is required"),
    ("q over 1,000 characters", "get", "/search?q=" + "a" * 1001, {}, 400, "q must be 1..1000 characters"),
    ("placement over 63 characters", "get", "/items/A/recommendations?placement=" + "p" * 64, {}, 400,
     "placement is longer than 63 characters"),
    ("101 examples", "post", "/recommendations", {"json": {"examples": ["A"] * 101}}, 400,
     "examples holds at most 100 items"),
    ("an example id over 512 characters", "post", "/recommendations", {"json": {"examples": ["x" * 513]}}, 400,
     "examples[0] must be an item id of 1..512 characters"),
    ("wrong type: an example is a number", "post", "/recommendations", {"json": {"examples": ["A", 7]}}, 400,
     "examples[1] must be an item id (a string)"),
    ("no examples", "post", "/recommendations", {"json": {"examples": []}}, 400, "at least one item"),
    ("body is a list, object expected", "post", "/recommendations", {"json": ["A"]}, 400,
     "the body must be a JSON object"),
    ("body not sent as JSON", "put", "/items/A", {"data": "title=x", "content_type": "application/x-www-form-urlencoded"},
     400, "Content-Type: application/json"),
    ("empty JSON body", "post", "/events", {"data": "", "content_type": "application/json"}, 400, "body is empty"),
    ("empty event list", "post", "/events", {"json": []}, 400, "no events given"),
    ("wrong type: an event id is an object", "post", "/events",
     {"json": [{"user_id": "u", "item_id": "A", "event_type": "view"}, {"user_id": {"$ne": 1}, "item_id": "A"}]},
     400, "events[1].user_id must be a string or an integer"),
    ("wrong type: a title is a list", "put", "/items/B", {"json": {"title": ["t"]}}, 400, "title must be a string"),
    ("external_id in body differs from the URL", "put", "/items/B", {"json": {"external_id": "C"}}, 400, "differs"),
    ("unknown item in an event (kept as a reject)", "post", "/events",
     {"json": {"user_id": "u", "item_id": "NOPE", "event_type": "view"}}, 200, "unknown item"),
    ("unknown event type (kept as a reject)", "post", "/events",
     {"json": {"user_id": "u", "item_id": "A", "event_type": "teleport"}}, 200, "unknown event type"),
    ("SQL injection in a JSON id", "post", "/recommendations", {"json": {"examples": ["A' or 1=1--"]}}, 404,
     "unknown item"),
    ("SQL injection in the search text", "get", "/search?q=%27%3B%20drop%20table%20pgrecs.items%3B--", {}, 200, ""),
    ("emoji and RTL text in an id", "get", "/items/%F0%9F%91%9F%E2%80%AE/recommendations", {}, 404, "unknown item"),
]


def _case(case):
    """A case that gets as far as a search encodes the query with the embedding model: slow."""
    reaches_the_model = case[2].startswith("/search") and case[4] == 200
    return pytest.param(*case, id=case[0], marks=[pytest.mark.slow] if reaches_the_model else [])


@pytest.mark.parametrize("what, method, path, kwargs, status, words", [_case(c) for c in CASES])
def test_bad_input_gets_a_problem(table_client, what, method, path, kwargs, status, words):
    response = getattr(table_client, method)(path, **kwargs)
    assert response.status_code == status, (what, response.get_json())
    if status < 400:
        assert words in response.get_data(as_text=True), response.get_json()
    if status >= 400:
        assert response.mimetype == "application/problem+json"
        body = response.get_json()
        assert body["status"] == status and body["type"] == "about:blank" and body["title"]
        assert words in body["detail"] and "\n" not in body["detail"], body
        assert body["request_id"] == response.headers["X-Request-Id"]


def test_injection_left_the_table_alone(client, conn):
    client.get("/items/A/recommendations?category=x'%3Bdrop%20table%20pgrecs.items--")
    assert conn.execute("select count(*) from pgrecs.items").fetchone()[0] == 1


def test_statement_timeout_per_request(app, client):
    with app.test_request_context("/"):
        g.tenant = "default"
        from pgrecs.api.database import get_conn

        assert get_conn().execute("show statement_timeout").fetchone()[0] == "200ms"
    started = time.perf_counter()
    response = client.get("/test/slow")
    assert time.perf_counter() - started < 1.5
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert "statement timeout" in response.get_json()["detail"]
    # the pool's connection is usable again afterwards
    assert client.get("/items/A/recommendations?placement=nope").status_code == 404


def test_an_answer_survives_its_connection_ending_before_the_commit(client, caplog):
    """A standby stopping or a primary failing over after the response was built: the client gets
    the answer, the warning names the lost connection, and the pool serves the next request."""
    with caplog.at_level("WARNING", logger="pgrecs.api"):
        response = client.get("/test/lost")
    assert response.status_code == 200 and response.get_json() == {"answered": True}
    assert any("lost before the request's commit" in r.getMessage() for r in caplog.records), caplog.records
    assert client.get("/items/A/recommendations?placement=nope").status_code == 404


def test_unhandled_errors_are_500_problems_without_internals(client):
    response = client.get("/test/broken")
    assert response.status_code == 500 and response.mimetype == "application/problem+json"
    assert "secret" not in response.get_data(as_text=True)


def test_an_unparseable_optional_field_keeps_the_item_with_a_warning(client):
    response = client.put("/items/B", json={"title": "t", "price": "cheap"})
    assert response.status_code in (200, 201), response.get_json()
    body = response.get_json()
    assert [w["field"] for w in body["warnings"]] == ["price"] and body["warnings"][0]["reason"]
    # the record's id is required: without a usable one the row is still refused
    response = client.put("/items/" + "x" * 600, json={"title": "t"})
    assert response.status_code == 400 and response.get_json()["message"]
