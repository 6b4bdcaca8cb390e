"""Security: API keys and scopes, tenant isolation by row-level security, problem+json,
request ids, metrics, readiness, and the `pgrecs keys` commands."""

from __future__ import annotations

import json
import re

import numpy as np
import psycopg
import pytest
from pgvector import HalfVector

import scoring_world as world
from pgrecs import api_keys
from pgrecs import replicas
from pgrecs.api import auth
from conftest import api_key_for, close_app, new_app
from replica_support import replica_app, replica_server  # noqa: F401

OTHER = "other"


@pytest.fixture(params=["primary", "replica"])
def app(request, db_url):
    """The API on the primary alone, and with a streaming replica serving its reads."""
    if request.param == "primary":
        app = new_app(db_url)
    else:
        app = replica_app(db_url, request.getfixturevalue("replica_server"))
    yield app
    close_app(app)
    if request.param == "replica":
        # every read that got an answer got it from the replica
        name = replicas.display_url(app.config["REPLICA_URLS"][0])
        reads = [(path, backend) for method, path, status, backend in app.extensions.get("pgrecs_test_backends", [])
                 if status < 500 and backend and re.search(r"/(recommendations|similar|search)$", path)
                 and not (method == "POST" and status in (401, 403))]
        assert all(backend == name for _, backend in reads), reads


def _copy_world_to(conn: psycopg.Connection, tenant: str) -> None:
    """The scoring world again under another tenant: same external ids, titles prefixed 'Other '."""
    conn.execute("insert into pgrecs.tenants (tenant_id, name) values (%s, %s) on conflict do nothing",
                 (tenant, tenant))
    conn.execute(
        "insert into pgrecs.items (tenant_id, external_id, title, brand, category_path, price, stock, active, margin)"
        " select %s, external_id, 'Other ' || title, brand, category_path, price, stock, active, margin"
        " from pgrecs.items where tenant_id = 'default'", (tenant,))
    idmap = ("(select d.item_id as old, o.item_id as new from pgrecs.items d join pgrecs.items o"
             " on o.external_id = d.external_id and d.tenant_id = 'default' and o.tenant_id = %(t)s)")
    conn.execute(
        f"insert into pgrecs.item_neighbors (tenant_id, signal, item_id, neighbor_item_id, score, rank)"
        f" select %(t)s, n.signal, a.new, b.new, n.score, n.rank from pgrecs.item_neighbors n"
        f" join {idmap} a on a.old = n.item_id join {idmap} b on b.old = n.neighbor_item_id", {"t": tenant})
    conn.execute(
        f"insert into pgrecs.item_signals (tenant_id, item_id, popularity, trending, quality_score)"
        f" select %(t)s, a.new, s.popularity, s.trending, s.quality_score from pgrecs.item_signals s"
        f" join {idmap} a on a.old = s.item_id", {"t": tenant})
    conn.execute(
        f"insert into pgrecs.item_embeddings (tenant_id, item_id, model_id, embedding, text_sha256)"
        f" select %(t)s, a.new, e.model_id, e.embedding, e.text_sha256 from pgrecs.item_embeddings e"
        f" join {idmap} a on a.old = e.item_id", {"t": tenant})
    conn.execute("delete from pgrecs.placements where tenant_id = %s", (tenant,))  # the seeded defaults
    conn.execute(
        "insert into pgrecs.placements"
        " select (jsonb_populate_record(p, jsonb_build_object('tenant_id', %s::text))).*"
        " from pgrecs.placements p where p.tenant_id = 'default'", (tenant,))
    conn.execute("insert into pgrecs.users (tenant_id, external_id) values (%s, 'u1')", (tenant,))
    conn.execute(
        "insert into pgrecs.events (tenant_id, user_id, item_id, event_type, occurred_at, dedup_key)"
        " select %s, u.user_id, i.item_id, 'view', now() - interval '3 hours', gen_random_uuid()"
        " from pgrecs.users u, pgrecs.items i where u.tenant_id = %s and i.tenant_id = %s and i.external_id = 'F'",
        (tenant, tenant, tenant))


@pytest.fixture
def two_tenants(db_url, conn):
    """The scoring world in tenant 'default' and a copy in tenant 'other', with MiniLM-sized vectors."""
    ids = world.build(conn)
    uid = world.add_user(conn, "u1")
    world.add_event(conn, uid, ids["F"], "view", "3 hours")
    _copy_world_to(conn, OTHER)
    # random 384-d vectors under the default model, so /search and /similar have candidates in both
    model_id = conn.execute("select model_id from pgrecs.embedding_models where is_default").fetchone()[0]
    rng = np.random.default_rng(7)
    for (item_id, tenant) in conn.execute("select item_id, tenant_id from pgrecs.items").fetchall():
        v = rng.normal(size=384).astype(np.float32)
        conn.execute("insert into pgrecs.item_embeddings (tenant_id, item_id, model_id, embedding, text_sha256)"
                     " values (%s, %s, %s, %s, '\\x00')", (tenant, item_id, model_id, HalfVector(v / np.linalg.norm(v))))
    conn.commit()
    rows = conn.execute("select tenant_id, item_id from pgrecs.items").fetchall()
    owned = {"default": set(), OTHER: set()}
    for tenant, item_id in rows:
        owned[tenant].add(item_id)
    return owned


# --- keys and scopes ---------------------------------------------------------------------------

def test_every_endpoint_but_health_needs_a_key(client):
    for path in ("/items/A/similar", "/search?q=x", "/items/A/recommendations", "/users/u1/recommendations",
                 "/metrics", "/nope"):
        response = client.get(path, headers={"X-API-Key": ""})
        assert response.status_code == 401, path
        assert response.mimetype == "application/problem+json"
        body = response.get_json()
        assert body["status"] == 401 and body["title"] == "Unauthorized" and "X-API-Key" in body["detail"]
    for method, path in (("post", "/events"), ("put", "/items/A"), ("post", "/recommendations")):
        assert getattr(client, method)(path, json={}, headers={"X-API-Key": ""}).status_code == 401
    assert client.get("/healthz", headers={"X-API-Key": ""}).status_code == 200


def test_wrong_and_revoked_keys_get_401(client, app, db_url):
    assert client.get("/metrics", headers={"X-API-Key": "pgr_" + "x" * 43}).status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": "not-a-key"}).status_code == 401
    with psycopg.connect(db_url, autocommit=True) as admin:
        key_id, key = api_keys.create_key(admin, "default", ["admin"], name="to revoke")
        assert client.get("/metrics", headers={"X-API-Key": key}).status_code == 200
        assert api_keys.revoke_key(admin, key_id) is True
    response = client.get("/metrics", headers={"X-API-Key": key})
    assert response.status_code == 401 and "revoked" in response.get_json()["detail"]


def test_keys_are_stored_hashed(db_url):
    with psycopg.connect(db_url, autocommit=True) as admin:
        key_id, key = api_keys.create_key(admin, "default", ["read"])
        raw = admin.execute("select t::text from pgrecs.api_keys t where key_id = %s", (key_id,)).fetchone()[0]
        stored = admin.execute("select key_sha256 from pgrecs.api_keys where key_id = %s", (key_id,)).fetchone()[0]
    assert key[8:] not in raw and bytes(stored) == api_keys.key_sha256(key)
    assert key.startswith("pgr_") and len(key) == 47


def test_scopes(client, app):
    read = api_key_for(app, scopes=("read",))
    write = api_key_for(app, scopes=("write",))
    # read key: reads pass authorisation (404: no such item), writes and admin are 403
    assert client.get("/items/zz/similar", headers={"X-API-Key": read}).status_code == 404
    assert client.get("/items/zz/recommendations", headers={"X-API-Key": read}).status_code == 404
    response = client.post("/events", json={"user_id": "u", "item_id": "zz", "event_type": "view"},
                           headers={"X-API-Key": read})
    assert response.status_code == 403 and "'write'" in response.get_json()["detail"]
    assert client.put("/items/zz", json={"title": "t"}, headers={"X-API-Key": read}).status_code == 403
    assert client.get("/metrics", headers={"X-API-Key": read}).status_code == 403
    # write key: writes pass, reads are 403
    assert client.put("/items/zz", json={"title": "A title"}, headers={"X-API-Key": write}).status_code == 201
    assert client.get("/items/zz/similar", headers={"X-API-Key": write}).status_code == 403


def test_unknown_routes_need_a_key_then_404_problem(client):
    response = client.get("/nope")
    assert response.status_code == 404 and response.mimetype == "application/problem+json"
    assert response.get_json()["instance"] == "/nope"
    response = client.delete("/events")
    assert response.status_code == 405 and "POST" in response.headers["Allow"]


# --- tenant isolation ----------------------------------------------------------------------------

def _items_of(body) -> set[int]:
    if "items" in body:
        return {r["item_id"] for r in body["items"]}
    return {r["item_id"] for r in body["results"]}


def test_no_endpoint_crosses_tenants(app, client, two_tenants, minilm):
    keys = {t: api_key_for(app, tenant=t) for t in ("default", OTHER)}
    for tenant, key in keys.items():
        h = {"X-API-Key": key}
        responses = [
            client.get("/items/A/recommendations?placement=t&k=20", headers=h),
            client.get("/users/u1/recommendations?k=20", headers=h),
            client.post("/recommendations", json={"examples": ["A", "D"], "k": 20}, headers=h),
            client.get("/items/A/similar?k=50", headers=h),
            client.get("/search?q=runner&k=50", headers=h),
        ]
        for response in responses:
            assert response.status_code == 200, (tenant, response.get_json())
            got = _items_of(response.get_json())
            assert got, (tenant, response.request.path)
            assert got <= two_tenants[tenant], (tenant, response.request.path)
        titles = [r["title"] for r in responses[0].get_json()["items"]]
        assert all(t.startswith("Other ") == (tenant == OTHER) for t in titles)
        # an event posted under one tenant lands in that tenant only
        response = client.post("/events", json={"user_id": f"new-{tenant}", "item_id": "B", "event_type": "view"},
                               headers=h)
        assert response.status_code == 201
        response = client.put("/items/NEW", json={"title": f"New in {tenant}"}, headers=h)
        assert response.status_code == 201
        # the same PUT again is unchanged, found in the key's tenant (not the app's default one)
        response = client.put("/items/NEW", json={"title": f"New in {tenant}"}, headers=h)
        assert response.status_code == 200 and response.get_json()["status"] == "unchanged", response.get_json()
    with psycopg.connect(app.config["DATABASE_URL"]) as admin:
        rows = admin.execute("select u.tenant_id, u.external_id, i.tenant_id from pgrecs.events e"
                             " join pgrecs.users u using (user_id) join pgrecs.items i using (item_id)"
                             " where u.external_id like 'new-%' order by 1").fetchall()
        assert rows == [("default", "new-default", "default"), (OTHER, "new-other", OTHER)]
        assert admin.execute("select tenant_id, title from pgrecs.items where external_id = 'NEW' order by 1"
                             ).fetchall() == [("default", "New in default"), (OTHER, "New in other")]


def test_recs_functions_and_tables_under_the_api_role_see_one_tenant(db_url, two_tenants):
    with psycopg.connect(db_url) as c:
        a_of = dict(c.execute("select tenant_id, item_id from pgrecs.items where external_id = 'A'").fetchall())
        default_a = a_of["default"]
        c.execute("set role pgrecs_api")
        c.execute("select set_config('pgrecs.tenant', %s, false)", (OTHER,))
        tables = c.execute(
            "select quote_ident(table_schema) || '.' || quote_ident(table_name) from information_schema.columns"
            " where table_schema = 'pgrecs' and column_name = 'tenant_id' and table_name <> 'api_keys'").fetchall()
        assert len(tables) >= 15
        for (table,) in tables:
            foreign = c.execute(f"select count(*) filter (where tenant_id <> %s), count(*) from {table}",
                                (OTHER,)).fetchone()
            assert foreign[0] == 0, table
        # the other tenant's item ids do not exist for the recs.* functions
        for call in ("select count(*) from recs.similar_items(item_id => %s, k => 50)",
                     "select count(*) from recs.recommend_for_item(item => %s::bigint, k => 50, placement => 't')",
                     "select count(*) from recs.recommend(examples_positive => array[%s]::bigint[], k => 50)"):
            with pytest.raises(psycopg.errors.NoDataFound, match=f"unknown item: {default_a}"), c.transaction():
                c.execute(call, (default_a,))
        own = c.execute("select count(*) from recs.recommend_for_item(item => %s::bigint, k => 50, placement => 't')",
                        (a_of[OTHER],)).fetchone()[0]
        assert own > 0
        # writes into another tenant are refused by the policy's WITH CHECK
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("insert into pgrecs.users (tenant_id, external_id) values ('default', 'intruder')")
        c.rollback()
        c.execute("set role pgrecs_api")
        # no tenant set: nothing visible at all (fail closed)
        c.execute("select set_config('pgrecs.tenant', '', false)")
        assert c.execute("select count(*) from pgrecs.items").fetchone()[0] == 0
        # keys are out of reach; only the lookup function answers
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("select * from pgrecs.api_keys")


def test_api_role_cannot_bypass_rls(db_url):
    with psycopg.connect(db_url) as c:
        row = c.execute("select rolsuper, rolbypassrls, rolcanlogin from pg_roles where rolname = 'pgrecs_api'").fetchone()
        assert row == (False, False, False)
        # the callable SECURITY DEFINER functions: the key lookup, the console's sessions (the API
        # role reads neither keys nor sessions) and the audit marts (dbt tables carry no RLS; these
        # read them for the tenant in pgrecs.tenant only). The others are trigger functions (the
        # statement-level integrity checks of the event log and the neighbour lists, the rule audit trail), which SQL cannot call.
        definers = c.execute(
            "select p.oid::regprocedure::text, p.prorettype = 'trigger'::regtype, p.proconfig"
            " from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
            " where n.nspname in ('recs', 'pgrecs') and p.prosecdef order by 1").fetchall()
        assert [name for name, is_trigger, _ in definers if not is_trigger] == [
            "pgrecs.api_key_lookup(bytea)", "pgrecs.console_session_end(bytea)",
            "pgrecs.console_session_start(bytea,bytea,interval)", "pgrecs.console_session_touch(bytea,interval)",
            "recs.catalog_audit_items(integer,text)", "recs.catalog_audit_summary()"]
        assert {name for name, is_trigger, _ in definers if is_trigger} == {
            "pgrecs.audit_business_rule_change()", "pgrecs.check_event_references()",
            "pgrecs.check_signal_references()", "pgrecs.delete_events_of_deleted_rows()"}
        for name, is_trigger, config in definers:
            if not is_trigger or name == "pgrecs.audit_business_rule_change()":
                assert "search_path=pg_catalog, pg_temp" in (config or []), name
        unprotected = c.execute(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " join pg_attribute a on a.attrelid = c.oid and a.attname = 'tenant_id'"
            " where n.nspname = 'pgrecs' and c.relkind = 'r' and not (c.relrowsecurity and c.relforcerowsecurity)"
        ).fetchall()
        assert unprotected == []


def test_a_request_cannot_leave_its_connection_as_another_role(app):
    from flask import g

    from pgrecs.api.database import get_conn

    for _ in range(2):
        with app.test_request_context("/"):
            g.tenant = "default"
            conn = get_conn()
            assert conn.execute("select current_user").fetchone()[0] == "pgrecs_api"
            conn.execute("reset role")
            conn.commit()
    with app.test_request_context("/"):
        g.tenant = "default"
        assert get_conn().execute("select current_user").fetchone()[0] == "pgrecs_api"


# --- errors, request ids, metrics, readiness, OpenAPI --------------------------------------------

def test_request_id_is_echoed_or_made(client):
    response = client.get("/nope", headers={"X-Request-Id": "abc-123"})
    assert response.headers["X-Request-Id"] == "abc-123" and response.get_json()["request_id"] == "abc-123"
    response = client.get("/healthz", headers={"X-Request-Id": "bad id <script>"})
    assert len(response.headers["X-Request-Id"]) == 32


def test_json_logs_carry_the_request_id(client, capfd):
    client.get("/items/nope/similar", headers={"X-Request-Id": "log-me-1"})
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "pgrecs.access" and line.get("request_id") == "log-me-1"]
    assert access and access[0]["status"] == 404 and access[0]["endpoint"] == "/items/<path:external_id>/similar"
    assert access[0]["tenant"] == "default" and isinstance(access[0]["duration_ms"], float)


def test_each_access_line_is_printed_once(client, capfd):
    # dbt, run in-process before the demo serves, leaves a handler on the root logger
    import logging
    import sys

    root_handler = logging.StreamHandler(sys.stderr)
    logging.root.addHandler(root_handler)
    try:
        client.get("/healthz", headers={"X-Request-Id": "once-only"})
    finally:
        logging.root.removeHandler(root_handler)
    printed = [line for line in capfd.readouterr().err.splitlines() if "once-only" in line or line == "request"]
    assert len(printed) == 1 and json.loads(printed[0])["request_id"] == "once-only"


def test_metrics(client, db_url):
    client.get("/items/nope/similar")
    client.get("/healthz")
    text = client.get("/metrics").get_data(as_text=True)
    assert re.search(r'^pgrecs_http_request_duration_seconds_count\{endpoint="/healthz",method="GET",status="200"\} '
                     r'[1-9]', text, re.M)
    assert 'pgrecs_http_errors_total{endpoint="/items/<path:external_id>/similar",status="404"}' in text
    assert 'pgrecs_embedding_queue_depth{tenant="default"} 0.0' in text


@pytest.mark.slow  # /readyz loads the query model
def test_readyz(client, db_url):
    body = client.get("/readyz", headers={"X-API-Key": ""}).get_json()
    from pgrecs.migrate import head_revision

    assert body["status"] == "ready" and body["checks"]["migrations"] == head_revision()
    assert body["checks"]["database"] == "ok" and body["checks"]["model"]
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("update public.alembic_version set version_num = '0001_foundation'")
    response = client.get("/readyz")
    assert response.status_code == 503 and "migration head" in response.get_json()["detail"]


def test_openapi_documents_the_api_key(client):
    spec = client.get("/openapi.json", headers={"X-API-Key": ""}).get_json()
    assert spec["components"]["securitySchemes"]["ApiKeyAuth"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key", "description": auth.SECURITY_SCHEME["description"]}
    assert spec["security"] == [{"ApiKeyAuth": []}]
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert "401" in spec["paths"]["/events"]["post"]["responses"]


# --- CLI -----------------------------------------------------------------------------------------

def test_keys_cli(cli, db_url):
    result = cli("keys", "create", "--tenant", "shop-b", "--scopes", "read,write", "--name", "web")
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert key.startswith("pgr_")
    listing = cli("keys", "list").output
    assert "shop-b" in listing and "read,write" in listing and key not in listing and "web" in listing
    key_id = [line.split()[0] for line in listing.splitlines() if "shop-b" in line][0]
    assert cli("keys", "revoke", key_id).exit_code == 0
    assert "revoked" in cli("keys", "list").output
    bad = cli("keys", "create", "--tenant", "shop-b", "--scopes", "read,root")
    assert bad.exit_code == 1 and bad.output.startswith("error: scopes must be")
    assert cli("keys", "revoke", "999999").exit_code == 1
    assert cli("keys", "create", "--tenant", "Bad Tenant!", "--scopes", "read").exit_code == 1


def test_keys_create_takes_the_global_tenant(cli, conn):
    def tenant_of(output: str) -> str:
        key = output.strip().splitlines()[-1]
        return conn.execute("select tenant_id from pgrecs.api_keys where key_sha256 = %s",
                            (api_keys.key_sha256(key),)).fetchone()[0]

    assert tenant_of(cli("keys", "create", "--scopes", "read").output) == "default"
    assert tenant_of(cli("--tenant", "shop-c", "keys", "create", "--scopes", "read").output) == "shop-c"
    # the command's own --tenant still wins
    assert tenant_of(cli("--tenant", "shop-c", "keys", "create", "--tenant", "shop-d", "--scopes", "read").output) == "shop-d"
