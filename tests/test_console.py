"""The merchant console over HTTP (Flask test client): sign-in, the session cookie and its storage,
idle expiry, CSRF, scopes, tenant isolation, rules with preview and audit; the landing page and
the offline /docs. The same flows run in a real browser in tests/test_console_browser.py."""

from __future__ import annotations

import hashlib
import re

import psycopg
import pytest

import scoring_world as world
from pgrecs import api_keys

OTHER = "other"


@pytest.fixture
def app(app, conn):
    """The API over the scoring world, and another tenant's item and rule the console must never show."""
    world.build(conn)
    conn.execute("insert into pgrecs.tenants (tenant_id, name) values (%s, %s)", (OTHER, OTHER))
    conn.execute("insert into pgrecs.items (tenant_id, external_id, title) values (%s, 'OTHER-1', 'Secret other item')",
                 (OTHER,))
    conn.execute("insert into pgrecs.business_rules (tenant_id, name, kind, brand, factor)"
                 " values (%s, 'other shop campaign', 'boost', 'X', 2)", (OTHER,))
    conn.commit()
    return app


def key(db_url, scopes=("merchant",), tenant="default", name="shop manager"):
    with psycopg.connect(db_url, autocommit=True) as admin:
        return api_keys.create_key(admin, tenant, list(scopes), name=name)


def form_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client, api_key, **headers):
    page = client.get("/console/login", headers=headers)
    return client.post("/console/login", data={"api_key": api_key, "csrf_token": form_token(page.text)},
                       headers=headers)


def test_sign_in_sets_a_strict_httponly_cookie_and_stores_only_its_hash(client, db_url):
    key_id, api_key = key(db_url)
    response = sign_in(client, api_key)
    assert response.status_code == 302 and response.headers["Location"] == "/console/"
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("pgrecs_console="))
    token = cookie.split(";")[0].split("=", 1)[1]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    with psycopg.connect(db_url) as admin:
        rows = admin.execute("select tenant_id, key_id, token_sha256, created_at, last_seen_at from pgrecs.console_sessions").fetchall()
    assert len(rows) == 1
    assert rows[0][:3] == ("default", key_id, hashlib.sha256(token.encode()).digest())
    page = client.get("/console/")
    assert page.status_code == 200 and "Overview" in page.text and "shop manager" in page.text
    assert page.headers["Cache-Control"] == "no-store" and "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "<script" not in page.text


def test_secure_cookie_behind_tls(client, db_url):
    _, api_key = key(db_url)
    # behind a proxy that ends TLS
    response = sign_in(client, api_key, **{"X-Forwarded-Proto": "https"})
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("pgrecs_console="))
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # TLS to this server itself
    page = client.get("/console/login", base_url="https://localhost")
    assert "Secure" in next(c for c in page.headers.getlist("Set-Cookie") if c.startswith("pgrecs_console_login="))
    response = client.post("/console/login", data={"api_key": api_key, "csrf_token": form_token(page.text)},
                           base_url="https://localhost")
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("pgrecs_console="))
    assert response.status_code == 302 and "Secure" in cookie
    # plain HTTP: not Secure (the browser would drop it)
    response = sign_in(client, api_key)
    assert "Secure" not in next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("pgrecs_console="))


def test_logout_ends_the_session(client, db_url):
    _, api_key = key(db_url)
    sign_in(client, api_key)
    page = client.get("/console/rules")
    response = client.post("/console/logout", data={"csrf_token": form_token(page.text)})
    assert response.status_code == 302 and response.headers["Location"] == "/console/login"
    assert client.get("/console/").status_code == 302
    with psycopg.connect(db_url) as admin:
        assert admin.execute("select ended_at is not null from pgrecs.console_sessions").fetchone()[0]


def test_idle_sessions_and_revoked_keys_are_refused(client, db_url):
    key_id, api_key = key(db_url)
    sign_in(client, api_key)
    assert client.get("/console/").status_code == 200
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("update pgrecs.console_sessions set last_seen_at = now() - interval '31 minutes'")
    response = client.get("/console/catalog")
    assert response.status_code == 302 and response.headers["Location"].startswith("/console/login?next=/console/catalog")
    sign_in(client, api_key)
    assert client.get("/console/").status_code == 200
    with psycopg.connect(db_url, autocommit=True) as admin:
        api_keys.revoke_key(admin, key_id)
    assert client.get("/console/").status_code == 302


def test_keys_without_the_scope_and_bad_keys_are_refused(client, db_url):
    _, read_key = key(db_url, scopes=("read", "write"))
    response = sign_in(client, read_key)
    assert response.status_code == 403 and "lacks the merchant scope" in response.text
    assert client.get("/console/").status_code == 302
    assert sign_in(client, "pgr_" + "x" * 43).status_code == 401
    assert sign_in(client, "hello").status_code == 401
    _, admin_key = key(db_url, scopes=("admin",))
    assert sign_in(client, admin_key).status_code == 302


def test_posts_without_the_csrf_token_are_refused(client, db_url):
    _, api_key = key(db_url)
    page = client.get("/console/login")
    # the login form needs its token too
    response = client.post("/console/login", data={"api_key": api_key})
    assert response.status_code == 400 and "security token" in response.text
    assert client.post("/console/login", data={"api_key": api_key, "csrf_token": "forged"}).status_code == 400
    assert client.post("/console/login", data={"api_key": api_key, "csrf_token": form_token(page.text)}).status_code == 302
    for path, data in [("/console/logout", {}),
                       ("/console/rules/apply", {"name": "x", "kind": "block", "brand": "Acme"}),
                       ("/console/rules/preview", {"name": "x", "kind": "block", "brand": "Acme"})]:
        response = client.post(path, data=data)
        assert response.status_code == 400, path
        response = client.post(path, data={**data, "csrf_token": "0" * 64})
        assert response.status_code == 400, path
    with psycopg.connect(db_url) as admin:
        assert admin.execute("select count(*) from pgrecs.business_rules where tenant_id = 'default'").fetchone()[0] == 0
    assert client.get("/console/").status_code == 200  # still signed in


def test_another_tenants_key_sees_none_of_this_tenants_data(client, db_url):
    _, api_key = key(db_url, tenant=OTHER, name="other manager")
    sign_in(client, api_key)
    assert client.get("/console/items/A").status_code == 404
    assert client.get("/console/items/OTHER-1").status_code == 200
    rules_page = client.get("/console/rules").text
    assert "other shop campaign" in rules_page
    items_page = client.get("/console/items?q=runner").text
    assert "Alpha runner" not in items_page
    overview = client.get("/console/").text
    assert re.search(r'Items</div><div class="value">1<', overview)
    why = client.get("/console/why-not?context_item=A&why_not=B&placement=t")
    assert "unknown item: B" in why.text


def test_no_page_shows_another_tenants_data(client, db_url):
    """Every page, signed in with the other shop's key, after this shop has users, events, served
    lists, a rule and an experiment: none of it appears, and its ids are unknown."""
    with psycopg.connect(db_url, autocommit=True) as admin:
        user = admin.execute("insert into pgrecs.users (external_id) values ('shopper-of-default') returning user_id").fetchone()[0]
        items = dict(admin.execute("select external_id, item_id from pgrecs.items where tenant_id = 'default'").fetchall())
        admin.execute("insert into pgrecs.events (user_id, item_id, event_type, occurred_at, dedup_key)"
                      " select %s, item_id, 'purchase', now() - interval '1 day', gen_random_uuid() from pgrecs.items"
                      " where tenant_id = 'default'", (user,))
        admin.execute("insert into pgrecs.recommendation_requests (endpoint, placement, user_id, k, item_ids)"
                      " values ('user', 't', %s, 2, %s)", (user, [items["A"], items["B"]]))
        rule = admin.execute("insert into pgrecs.business_rules (tenant_id, name, kind, brand, factor)"
                             " values ('default', 'default shop campaign', 'boost', 'Acme', 2) returning rule_id").fetchone()[0]
        experiment = admin.execute("insert into pgrecs.experiments (tenant_id, name, salt) values"
                                   " ('default', 'default-shop-test', 's') returning experiment_id").fetchone()[0]
        admin.execute("insert into pgrecs.experiment_variants (tenant_id, experiment_id, name, placement, is_control, position)"
                      " values ('default', %s, 'control', 't', true, 1)", (experiment,))
    # this shop's own key sees them (so the markers below are real)
    _, own = key(db_url, name="own manager")
    sign_in(client, own)
    assert "shopper-of-default" in client.get("/console/users").text
    assert "default shop campaign" in client.get("/console/rules").text
    assert client.get("/console/experiments/default-shop-test").status_code == 200
    client.post("/console/logout", data={"csrf_token": form_token(client.get("/console/rules").text)})

    _, other = key(db_url, tenant=OTHER, name="other manager")
    sign_in(client, other)
    markers = ["Alpha runner", "Acme", "shopper-of-default", "default shop campaign", "default-shop-test"]
    pages = ["/console/", "/console/?days=3650", "/console/catalog", "/console/items", "/console/items?q=runner",
             "/console/users", "/console/users?q=shopper", "/console/rules", "/console/rules/new",
             "/console/experiments", "/console/exposure?days=3650", "/console/why-not",
             "/console/items/OTHER-1", "/console/items/OTHER-1?why_not=A&placement=t"]
    for path in pages:
        page = client.get(path)
        assert page.status_code == 200, path
        assert "other manager" in page.text, path
        assert not [m for m in markers if m in page.text], path
    for path in ["/console/items/A", "/console/users/shopper-of-default", f"/console/rules/{rule}/edit",
                 "/console/experiments/default-shop-test"]:
        page = client.get(path)
        # the page names the id asked for, and nothing else of this shop
        assert page.status_code == 404 and not [m for m in markers if m in page.text and m not in path], path
    why = client.get("/console/why-not?context_user=shopper-of-default&why_not=A&placement=t").text
    assert "unknown" in why and "Alpha runner" not in why
    # nor can it change this shop's rule
    token = form_token(client.get("/console/rules").text)
    response = client.post("/console/rules/apply", data={"csrf_token": token, "action": "disable", "rule_id": str(rule)})
    assert response.status_code in (400, 404)
    with psycopg.connect(db_url) as admin:
        assert admin.execute("select enabled from pgrecs.business_rules where rule_id = %s", (rule,)).fetchone()[0]


@pytest.mark.parametrize("app_config", [{"CONSOLE_IDLE_MINUTES": 5}], ids=["idle after 5 minutes"])
def test_idle_expiry_follows_the_configured_minutes(client, db_url):
    _, api_key = key(db_url)
    sign_in(client, api_key)
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("update pgrecs.console_sessions set last_seen_at = now() - interval '4 minutes'")
        # used within the idle time: still signed in, and seen again from now on
        assert client.get("/console/").status_code == 200
        assert admin.execute("select now() - last_seen_at < interval '1 minute'"
                             " from pgrecs.console_sessions").fetchone()[0]
        admin.execute("update pgrecs.console_sessions set last_seen_at = now() - interval '6 minutes'")
    response = client.get("/console/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/console/login")
    # the stale cookie is cleared with the redirect
    assert any(c.startswith("pgrecs_console=;") for c in response.headers.getlist("Set-Cookie"))


def test_rule_preview_changes_nothing_until_applied_and_the_audit_names_the_key(client, db_url):
    _, api_key = key(db_url)
    sign_in(client, api_key)
    form = client.get("/console/rules/new").text
    data = {"csrf_token": form_token(form), "action": "save", "name": "hide B", "kind": "block", "item": "B",
            "placement": "t", "enabled": "true", "context_items": "A"}
    preview = client.post("/console/rules/preview", data=data)
    assert preview.status_code == 200 and 'data-entered="' in preview.text
    before, after = re.findall(r"<ol class=\"list\">(.*?)</ol>", preview.text, re.S)
    assert "B Bravo runner" in before and "B Bravo runner" not in after
    with psycopg.connect(db_url) as admin:
        assert admin.execute("select count(*) from pgrecs.business_rules").fetchone()[0] == 1  # the other shop's only
        assert admin.execute("select count(*) from pgrecs.business_rule_changes where tenant_id = 'default'").fetchone()[0] == 0
    applied = client.post("/console/rules/apply", data={**data, "csrf_token": form_token(preview.text)})
    assert applied.status_code == 302 and "saved=" in applied.headers["Location"]
    rules_page = client.get(applied.headers["Location"]).text
    assert "hide B" in rules_page and "console: shop manager" in rules_page
    with psycopg.connect(db_url) as admin:
        admin.execute("set pgrecs.tenant = 'default'")
        assert "B" not in [r[0] for r in admin.execute(
            "select external_id from recs.recommend_for_item(item => 'A', placement => 't')")]
        [(action, actor, new_row)] = admin.execute(
            "select action, actor, new_row from pgrecs.business_rule_changes where tenant_id = 'default'").fetchall()
    assert action == "insert" and actor.startswith("console: shop manager (key ") and new_row["name"] == "hide B"


def test_rule_form_errors_are_one_line(client, db_url):
    _, api_key = key(db_url)
    sign_in(client, api_key)
    token = form_token(client.get("/console/rules/new").text)
    for data, message in [({"kind": "pin", "item": "A"}, "a pin needs an item and a position"),
                          ({"kind": "boost", "brand": "Acme", "factor": "lots"}, "factor must be a number"),
                          ({"kind": "block", "item": "NOPE"}, "unknown item: NOPE"),
                          ({"kind": "block"}, "a rule must match something")]:
        response = client.post("/console/rules/apply", data={"csrf_token": token, "name": "r", **data})
        assert response.status_code == 400 and message in response.text, data


def test_the_api_role_cannot_read_sessions_or_rewrite_the_audit(db_url, conn):
    world.build(conn)
    conn.execute("select recs.create_rule(name => 'b', kind => 'block', brand => 'Acme')")
    conn.commit()
    with psycopg.connect(db_url) as api:
        api.execute("set role pgrecs_api")
        api.execute("set pgrecs.tenant = 'default'")
        for statement in ("select * from pgrecs.console_sessions", "delete from pgrecs.business_rule_changes",
                          "update pgrecs.business_rule_changes set actor = 'someone else'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                with api.transaction():
                    api.execute(statement)
        # the trail is readable, and written by the trigger for the API role's own changes
        api.execute("select recs.set_rule_enabled(rule_id => 1, enabled => false)")
        assert [r[0] for r in api.execute("select action from recs.business_rule_changes()")] == ["update", "insert"]


def test_sign_in_returns_to_the_page_asked_for_and_never_to_another_site(client, db_url):
    _, api_key = key(db_url)
    assert client.get("/console/exposure").headers["Location"] == "/console/login?next=/console/exposure"
    page = client.get("/console/login?next=/console/exposure")
    response = client.post("/console/login", data={"api_key": api_key, "csrf_token": form_token(page.text),
                                                   "next": "/console/exposure"})
    assert response.headers["Location"] == "/console/exposure"
    for target in ("https://evil.example/", "//evil.example/console", "/metrics"):
        page = client.get("/console/login")
        response = client.post("/console/login", data={"api_key": api_key, "csrf_token": form_token(page.text),
                                                       "next": target})
        assert response.headers["Location"] == "/console/", target


def test_landing_page_and_offline_docs(client):
    landing = client.get("/", headers={"X-API-Key": ""})
    assert landing.status_code == 200
    for link in ('href="/docs"', 'href="/openapi.json"', 'href="/console/"'):
        assert link in landing.text
    docs = client.get("/docs", headers={"X-API-Key": ""})
    assert docs.status_code == 200
    urls = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert len(urls) >= 4 and "//" not in "".join(urls) and "cdn" not in docs.text
    for url in urls:
        asset = client.get(url, headers={"X-API-Key": ""})
        assert asset.status_code == 200 and len(asset.data) > 100, url
    assert "validatorUrl" in docs.text
    spec = client.get("/openapi.json", headers={"X-API-Key": ""})
    assert spec.status_code == 200 and not [p for p in spec.get_json()["paths"] if p == "/" or "console" in p]


def test_charts_are_deterministic_inline_svg():
    import xml.etree.ElementTree as ET

    from pgrecs.console import charts

    first = str(charts.bars(["0.0", "0.1", "0.2"], [3, 0, 5], "Items per quality score"))
    # the same data gives the same bytes, and the SVG is well-formed
    assert first == str(charts.bars(["0.0", "0.1", "0.2"], [3, 0, 5], "Items per quality score"))
    ET.fromstring(first)
    assert first.startswith("<svg ") and 'aria-label="Items per quality score"' in first
    # nothing to fetch or run: only the SVG namespace names a URL
    assert "<script" not in first and set(re.findall(r"https?://[^\" ]+", first)) <= {
        "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert charts.lorenz([0, 0.5, 1], [0, 0.1, 1], "Exposure") == charts.lorenz([0, 0.5, 1], [0, 0.1, 1], "Exposure")


def test_charts_draw_the_values_they_are_given():
    import xml.etree.ElementTree as ET

    from pgrecs.console import charts

    ns = {"s": "http://www.w3.org/2000/svg"}
    svg = ET.fromstring(str(charts.bars(["a", "b", "c"], [3, 0, 6], "Bars", ylabel="items")))
    bars = {r.find("s:title", ns).text: float(r.get("height")) for r in svg.findall("s:rect", ns)}
    assert bars["c: 6"] == pytest.approx(2 * bars["a: 3"], rel=0.02) and bars["b: 0"] == 0
    # one more event is another chart
    series = {"view": [4.0, 1.0], "click": [1.0, 0.0]}
    first = charts.stacked_days(["2026-11-30", "2026-12-01"], series, "Events per day")
    changed = charts.stacked_days(["2026-11-30", "2026-12-01"], {"view": [4.0, 2.0], "click": [1.0, 0.0]},
                                  "Events per day")
    assert changed != first and "2026-12-01 view: 2" in changed and "2026-12-01 view: 1<" in first
    # text is escaped, and empty data still draws axes rather than failing
    assert "&lt;b&gt;" in charts.shares(["<b>"], [0.5], [0.25], "Shares")
    for empty in (charts.bars([], [], "x"), charts.stacked_days([], {}, "x"), charts.shares([], [], [], "x"),
                  charts.lorenz([], [], "x"), charts.intervals([("CTR", [None], [None], [None])], ["control"], "x")):
        ET.fromstring(str(empty))


def test_catalog_health_shows_the_embedding_decisions(client, db_url, conn):
    _, api_key = key(db_url)
    sign_in(client, api_key)
    assert "None: the rule decides for every item." in client.get("/console/catalog").text
    conn.execute("select * from recs.set_embed_override(item => 'B', embed => false)")
    conn.execute("update pgrecs.items set title = 'test', brand = null, category_path = '{}', embed_override = true"
                 " where external_id = 'C'")
    conn.commit()
    page = client.get("/console/catalog").text
    section = page[page.index('id="embed-decisions"'):]
    rows = re.findall(r"<tr><td><a [^>]*>(\w+)</a></td><td>([^<]*)</td>\s*<td><span [^>]*>(\w+)</span></td>\s*"
                      r"<td>([^<]*)</td></tr>", section)
    assert rows == [("B", "Bravo runner", "refuse", "fine"), ("C", "test", "embed", "placeholder text")]
