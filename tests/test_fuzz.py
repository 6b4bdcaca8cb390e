"""Fuzzing: schemathesis over the whole /openapi.json, plus hypothesis-made JSON bodies,
query strings and raw bytes. Zero server errors (5xx) allowed.

Schemathesis runs every operation in both generation modes with the API key:
- positive (data the document allows): no 5xx, and the status code, content type and body of every
  response must be the ones the document declares for that operation;
- negative (data the document forbids: wrong types, out-of-range k, unknown fields, ...): the same,
  and the request must be refused with a 4xx (schemathesis' negative_data_rejection).
Half of the positive cases get a known item / user id in the path (and known items in the body of
POST /recommendations), so the SQL behind each endpoint runs with fuzzed k, placement and filters.

Bounded: PGRECS_FUZZ_EXAMPLES examples per operation and mode (default 25, about 30 s here; the
stress run in tests/stress/test_fuzz_long.py uses 300), derandomised so a failure reproduces.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_schema_conformance, status_code_conformance)

import scoring_world as world
from conftest import api_key_for, close_app, new_app

pytestmark = pytest.mark.slow  # fuzzing

EXAMPLES = int(os.environ.get("PGRECS_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def build_fuzz_app(db_url, conn):
    """The scoring test world (items A..N, user u1 with one view) behind a keyed API app."""
    world.build(conn)
    uid = world.add_user(conn, "u1")
    world.add_event(conn, uid, conn.execute("select item_id from pgrecs.items where external_id = 'F'").fetchone()[0],
                    "view")
    conn.commit()
    return new_app(db_url, TESTING=False)


@pytest.fixture
def fuzz_app(db_url, conn, minilm):
    app = build_fuzz_app(db_url, conn)
    yield app
    close_app(app)


def _no_5xx(response, what) -> None:
    assert response.status_code < 500, (what, response.status_code, response.text[:500])


def _known_ids(case) -> None:
    """Point the case at ids that exist, so the recommendation SQL runs (not only the 404 path)."""
    if "external_id" in (case.path_parameters or {}):
        case.path_parameters["external_id"] = "u1" if case.path.startswith("/users/") else "A"
    if case.path == "/recommendations" and isinstance(case.body, dict):
        case.body["examples"] = ["A", "B"]
        for name in ("negative_examples", "context"):
            case.body.pop(name, None)
        if case.body.get("user_id") is not None:
            case.body["user_id"] = "u1"
    if case.path == "/events" and case.method == "POST":
        events = case.body if isinstance(case.body, list) else [case.body]
        for event in events:
            if isinstance(event, dict):
                event.update(user_id="u1", item_id="A")


def run_schemathesis(app, examples: int) -> dict[str, int]:
    """Every operation, both modes; returns the number of calls per operation."""
    key = api_key_for(app)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [op.ok() for op in schema.get_all_operations()]
    calls: dict[str, int] = {}
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        raw = operation.definition.raw
        # negative data needs something to break: parameters or a body
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if raw.get("parameters") or
                                             raw.get("requestBody") else [])
        for mode in modes:
            checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])

            @fuzz_settings(examples)
            @given(case=operation.as_strategy(generation_mode=mode), known=st.booleans())
            def run(case, known):
                if known and mode is GenerationMode.POSITIVE:
                    _known_ids(case)
                calls[label] = calls.get(label, 0) + 1
                # a case whose negated part is the API key header is sent without our key (-> 401)
                keyless = case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER)
                case.call_and_validate(headers=None if keyless else {"X-API-Key": key}, checks=checks)

            run()
    return calls


def test_schemathesis_whole_document(fuzz_app):
    calls = run_schemathesis(fuzz_app, EXAMPLES)
    spec = fuzz_app.test_client().get("/openapi.json").get_json()
    operations = {f"{m.upper()} {p}": op for p, item in spec["paths"].items() for m, op in item.items()}
    assert set(calls) == set(operations) and len(calls) >= 9, calls  # every operation was exercised
    with_input = [name for name, op in operations.items() if op.get("parameters") or op.get("requestBody")]
    assert len(with_input) >= 6 and all(calls[name] >= EXAMPLES for name in with_input), calls


def test_document_describes_every_request(fuzz_app):
    """Each operation declares its parameters / body; the fuzzing above is only as deep as this."""
    spec = fuzz_app.test_client().get("/openapi.json").get_json()
    ops = {f"{m.upper()} {p}": op for p, item in spec["paths"].items() for m, op in item.items()}
    params = {name: {x["name"] for x in op.get("parameters", [])} for name, op in ops.items()}
    assert {"k", "category", "price_min", "price_max", "in_stock"} <= params["GET /items/{external_id}/similar"]
    assert {"q", "k"} <= params["GET /search"]
    for name in ("GET /items/{external_id}/recommendations", "GET /users/{external_id}/recommendations"):
        assert {"k", "placement", "explain", "filters", "brand", "external_id"} <= params[name]
    for name in ("POST /events", "POST /recommendations", "PUT /items/{external_id}"):
        assert ops[name]["requestBody"]["required"] is True
    k = next(x for x in ops["GET /search"]["parameters"] if x["name"] == "k")["schema"]
    assert (k["minimum"], k["maximum"], k["type"]) == (1, 100, "integer")


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


def run_hypothesis_bodies(app, examples: int) -> None:
    client = app.test_client()
    h = {"X-API-Key": api_key_for(app)}
    fuzz = fuzz_settings(examples)

    @fuzz
    @given(body=st.one_of(EVENT, st.lists(EVENT, max_size=4), JSON))
    def events(body):
        _no_5xx(client.post("/events", json=body, headers=h), ("events", body))

    @fuzz
    @given(external_id=st.text(min_size=1, max_size=20).filter(lambda s: "/" not in s and s not in (".", "..")),
           body=st.one_of(ITEM, JSON))
    def items(external_id, body):
        _no_5xx(client.put(f"/items/{external_id}", json=body, headers=h), ("item", external_id, body))

    @fuzz
    @given(body=st.one_of(RECS, JSON))
    def recommendations(body):
        _no_5xx(client.post("/recommendations", json=body, headers=h), ("recommendations", body))

    @fuzz
    @given(path=st.sampled_from(["/items/A/recommendations", "/users/u1/recommendations", "/items/A/similar",
                                 "/search"]), query=QUERY)
    def reads(path, query):
        _no_5xx(client.get(path, query_string=query, headers=h), (path, query))

    @fuzz
    @given(raw=st.binary(max_size=200), path=st.sampled_from(["/events", "/recommendations", "/items/A"]))
    def raw_bodies(raw, path):
        method = client.put if path.startswith("/items/") else client.post
        _no_5xx(method(path, data=raw, content_type="application/json", headers=h), (path, raw))

    for run in (events, items, recommendations, reads, raw_bodies):
        run()


def test_json_bodies_and_query_strings_find_no_server_errors(fuzz_app):
    run_hypothesis_bodies(fuzz_app, EXAMPLES)
