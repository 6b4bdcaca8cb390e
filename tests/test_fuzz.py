"""Fuzzing (issue 7): schemathesis over /openapi.json, plus hypothesis-made JSON bodies and query
strings for the parameters the document does not describe yet. Zero server errors (5xx) allowed.

Bounded: a fixed number of examples per operation (PGRECS_FUZZ_EXAMPLES, default 25), no
shrinking deadline, derandomised so a failure reproduces.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scoring_world as world
from conftest import api_key_for

EXAMPLES = int(os.environ.get("PGRECS_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture
def fuzz_app(db_url, conn, minilm):
    from app.api import create_app

    world.build(conn)
    uid = world.add_user(conn, "u1")
    world.add_event(conn, uid, conn.execute("select item_id from pgrecs.items where external_id = 'F'").fetchone()[0],
                    "view")
    conn.commit()
    app = create_app({"TESTING": False, "DATABASE_URL": db_url})
    yield app
    pool = app.extensions.get("pgrecs_pool")
    if pool is not None:
        pool.close()


def _no_5xx(response, what) -> None:
    assert response.status_code < 500, (what, response.status_code, response.text[:500])


def test_schemathesis_finds_no_server_errors(fuzz_app):
    key = api_key_for(fuzz_app)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:
        @FUZZ
        @given(case=operation.as_strategy())
        def run(case):
            response = case.call(headers={"X-API-Key": key})
            _no_5xx(response, f"{case.method} {case.formatted_path}")

        run()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
EVENT = st.fixed_dictionaries({}, optional={
    "user_id": st.one_of(st.text(max_size=20), st.integers(), st.none()),
    "item_id": st.one_of(st.sampled_from(["A", "B", "F", "nope"]), st.text(max_size=20), st.integers()),
    "event_type": st.one_of(st.sampled_from(["view", "click", "purchase", "rating", "bogus"]), JSON),
    "occurred_at": st.one_of(st.text(max_size=30), st.datetimes().map(lambda d: d.isoformat()), st.integers()),
    "value": JSON, "session_id": JSON, "request_id": JSON, "event_id": JSON,
})
ITEM = st.fixed_dictionaries({}, optional={
    "title": JSON, "description": JSON, "brand": JSON, "category_path": JSON, "attributes": JSON,
    "price": st.one_of(st.floats(allow_nan=False), st.integers(), st.text(max_size=10)), "currency": JSON,
    "stock": JSON, "margin": JSON, "image_url": JSON, "active": JSON,
})
RECS = st.fixed_dictionaries({}, optional={
    "examples": st.one_of(st.lists(st.sampled_from(["A", "B", "D", "zz"]), max_size=4), JSON),
    "negative_examples": st.one_of(st.lists(st.sampled_from(["E", "zz"]), max_size=3), JSON),
    "context": JSON, "user_id": st.one_of(st.just("u1"), JSON), "placement": JSON, "k": JSON,
    "filters": st.one_of(st.fixed_dictionaries({}, optional={
        "category": JSON, "brand": JSON, "brands": JSON, "exclude_brands": JSON, "price_min": JSON,
        "price_max": JSON, "in_stock": JSON, "exclude": JSON}), JSON),
    "explain": JSON,
})
QUERY = st.dictionaries(
    st.sampled_from(["k", "placement", "explain", "category", "brand", "price_min", "price_max", "in_stock",
                     "filters", "q"]),
    st.one_of(st.text(max_size=40), st.integers().map(str), st.floats().map(str), JSON.map(str)),
    max_size=6,
)


def test_json_bodies_and_query_strings_find_no_server_errors(fuzz_app):
    client = fuzz_app.test_client()
    h = {"X-API-Key": api_key_for(fuzz_app)}

    @FUZZ
    @given(body=st.one_of(EVENT, st.lists(EVENT, max_size=4), JSON))
    def events(body):
        _no_5xx(client.post("/events", json=body, headers=h), ("events", body))

    @FUZZ
    @given(external_id=st.text(min_size=1, max_size=20).filter(lambda s: "/" not in s and s not in (".", "..")),
           body=st.one_of(ITEM, JSON))
    def items(external_id, body):
        _no_5xx(client.put(f"/items/{external_id}", json=body, headers=h), ("item", external_id, body))

    @FUZZ
    @given(body=st.one_of(RECS, JSON))
    def recommendations(body):
        _no_5xx(client.post("/recommendations", json=body, headers=h), ("recommendations", body))

    @FUZZ
    @given(path=st.sampled_from(["/items/A/recommendations", "/users/u1/recommendations", "/items/A/similar",
                                 "/search"]), query=QUERY)
    def reads(path, query):
        _no_5xx(client.get(path, query_string=query, headers=h), (path, query))

    @FUZZ
    @given(raw=st.binary(max_size=200))
    def raw_bodies(raw):
        _no_5xx(client.post("/events", data=raw, content_type="application/json", headers=h), raw)

    for run in (events, items, recommendations, reads, raw_bodies):
        run()
