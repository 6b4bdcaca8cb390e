"""The OpenAPI document describes every request and response, and what it promises holds:
keys on every operation but health, problem+json for every error, validation errors in one line."""

from __future__ import annotations

import psycopg
import pytest

from pgrecs import api_keys

PUBLIC = {"/healthz", "/readyz"}
BODY_METHODS = {"post", "put", "patch"}


@pytest.fixture
def app(app, conn):
    """The API over a catalog of one item, A."""
    conn.execute("insert into pgrecs.items (external_id, title) values ('A', 'An item')")
    conn.commit()
    return app


@pytest.fixture
def spec(client):
    response = client.get("/openapi.json", headers={"X-API-Key": ""})
    assert response.status_code == 200
    return response.get_json()


def _operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def _resolve(spec, schema):
    ref = schema.get("$ref")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


def test_every_operation_documents_inputs_outputs_and_errors(spec):
    assert spec["components"]["securitySchemes"]["ApiKeyAuth"]["name"] == "X-API-Key"
    seen = set()
    for path, method, op in _operations(spec):
        seen.add(f"{method.upper()} {path}")
        responses = op["responses"]
        success = [s for s in responses if s.startswith("2")]
        assert success and all(responses[s].get("content") for s in success), (path, method)
        for status, response in responses.items():
            if status[0] in "45":
                assert response["content"] == {"application/problem+json": {
                    "schema": {"$ref": "#/components/schemas/Problem"}}}, (path, method, status)
        if path in PUBLIC:
            assert op["security"] == []
            continue
        assert "security" not in op or op["security"] == [{"ApiKeyAuth": []}]
        assert {"401", "403", "503"} <= set(responses), (path, method)
        if op.get("parameters") or op.get("requestBody"):
            assert "400" in responses, (path, method)
        if method in BODY_METHODS:
            assert op["requestBody"]["required"] is True and "413" in responses
        if "{external_id}" in path:
            assert "404" in responses
    assert seen >= {"GET /healthz", "GET /readyz", "GET /metrics", "PUT /items/{external_id}",
                    "GET /items/{external_id}/similar", "GET /search", "GET /items/{external_id}/recommendations",
                    "GET /users/{external_id}/recommendations", "POST /recommendations", "POST /events"}


def test_request_schemas_carry_the_caps(spec):
    ops = {f"{m.upper()} {p}": op for p, m, op in _operations(spec)}
    params = {name: {x["name"]: x["schema"] for x in op.get("parameters", [])} for name, op in ops.items()}
    assert params["GET /search"]["q"] == {"type": "string", "minLength": 1, "maxLength": 1000}
    for name in ("GET /search", "GET /items/{external_id}/similar", "GET /items/{external_id}/recommendations",
                 "GET /users/{external_id}/recommendations"):
        k = params[name]["k"]
        assert (k["type"], k["minimum"], k["maximum"], k["default"]) == ("integer", 1, 100, 10)
    body = _resolve(spec, ops["POST /recommendations"]["requestBody"]["content"]["application/json"]["schema"])
    assert body["additionalProperties"] is False
    assert body["properties"]["examples"]["maxItems"] == 100
    assert body["properties"]["examples"]["items"]["maxLength"] == 512
    filters = spec["components"]["schemas"]["Filters"]
    assert set(filters["properties"]) == {"category", "brand", "brands", "exclude_brands", "price_min", "price_max",
                                          "in_stock", "exclude"}
    events = ops["POST /events"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert events[0] == {"$ref": "#/components/schemas/Event"}
    assert (events[1]["type"], events[1]["minItems"], events[1]["maxItems"]) == ("array", 1, 1000)
    item = _resolve(spec, ops["PUT /items/{external_id}"]["requestBody"]["content"]["application/json"]["schema"])
    assert item["additionalProperties"] is False and "price" in item["properties"]
    recs = _resolve(spec, ops["GET /items/{external_id}/recommendations"]["responses"]["200"]["content"]
                    ["application/json"]["schema"])
    assert {"request_id", "placement", "k", "items"} <= set(recs["properties"])


def _call(client, path, method, key):
    url = path.replace("{external_id}", "A")
    kwargs = {"json": {}} if method in BODY_METHODS else {}
    return getattr(client, method)(url, headers={"X-API-Key": key}, **kwargs)


def test_every_documented_operation_but_health_needs_a_valid_key(client, spec, db_url):
    with psycopg.connect(db_url, autocommit=True) as admin:
        key_id, revoked = api_keys.create_key(admin, "default", ["read", "write", "admin"], name="revoked")
        api_keys.revoke_key(admin, key_id)
    checked = 0
    for path, method, _ in _operations(spec):
        if path == "/readyz":
            continue  # it loads the query model; test_security.py::test_readyz calls it without a key
        for key, words in (("", "missing X-API-Key"), ("pgr_" + "x" * 43, "invalid"), (revoked, "revoked")):
            response = _call(client, path, method, key)
            if path in PUBLIC:
                assert response.status_code in (200, 503), (path, response.get_json())
                continue
            assert response.status_code == 401, (method, path, key)
            assert response.mimetype == "application/problem+json"
            assert words in response.get_json()["detail"]
            checked += 1
    assert checked >= 8 * 3


def test_validation_errors_are_one_line_problems_with_the_field_map(client):
    response = client.get("/items/A/recommendations?k=5&price_min=x&in_stock=maybe&colour=red")
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["detail"] == ("price_min must be a number; in_stock must be true or false; "
                              "unknown query parameter: colour")
    assert body["errors"]["query"]["price_min"] == ["must be a number"]
    assert body["request_id"] == response.headers["X-Request-Id"] and body["instance"] == "/items/A/recommendations"

    response = client.post("/events", json=[{"user_id": "u", "item_id": "A", "event_type": "view", "colour": 1}])
    assert response.get_json()["detail"] == "unknown field: events[0].colour"


def test_readyz_fails_when_the_model_cannot_load(client, db_url, minilm):
    assert client.get("/readyz").status_code == 200
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("update pgrecs.embedding_models set source = '/nonexistent/model' where is_default")
    response = client.get("/readyz")
    assert response.status_code == 503 and response.mimetype == "application/problem+json"
    assert "query model not loadable" in response.get_json()["detail"]
