"""The merchant console in a real headless Chromium (Debian's chromium and chromium-driver through
Selenium), on the demo data with a little served traffic (tests/console_demo.py), one server for
the module. Each page's screenshot is written under tests/artifacts/console/.

Every step that leaves a page (a click that posts a form, a link) waits for the old page to go
stale and the next one's landmark to appear (WebDriverWait, never a sleep): on a loaded machine
the next command could otherwise run against the page being left, or abort the navigation."""

from __future__ import annotations

import secrets
import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from conftest import TEMPLATE, create_database, drop_database

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "console"

WAIT_S = 60  # generous: only a broken page takes this long, a loaded machine merely a few seconds

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                       reason="no chromium: install it with `apt-get install -y chromium chromium-driver` "
                              "(as root; .ci/run does)"),
]


@pytest.fixture(scope="module")
def demo(server_url, template_url):
    import console_demo

    url = create_database(server_url, TEMPLATE)
    data = console_demo.build(url)
    with psycopg.connect(url, autocommit=True) as admin:
        from pgrecs import api_keys

        admin.execute("insert into pgrecs.tenants (tenant_id, name) values ('rival', 'Rival shop')")
        admin.execute("insert into pgrecs.items (tenant_id, external_id, title) values ('rival', 'R-1', 'Rival widget')")
        data["rival_key"] = api_keys.create_key(admin, "rival", ["merchant"], name="Rival manager")[1]
        data["read_key"] = api_keys.create_key(admin, "default", ["read", "write"], name="storefront")[1]
    data["url"] = url
    yield data
    drop_database(server_url, url)


@pytest.fixture(scope="module")
def server(demo):
    from werkzeug.serving import make_server

    from pgrecs.api import create_app

    app = create_app({"DATABASE_URL": demo["url"]})
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    app.extensions["pgrecs_pool"].close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--disable-gpu", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def shot(driver, name: str) -> Path:
    """A full-page screenshot (Chrome DevTools: beyond the viewport, up to 8000 px)."""
    import base64

    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1}
    data = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                            "clip": clip})["data"]
    path = ARTIFACTS / f"{name}.png"
    path.write_bytes(base64.b64decode(data))
    return path


def by_css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def all_css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def wait_for(driver, selector):
    """The element once it is on the page (the page that is loading, not the one being left)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(ec.presence_of_element_located((By.CSS_SELECTOR, selector)))


def click_and_wait(driver, element, selector):
    """Click something that loads another page, then wait for that page: the clicked element
    goes stale when its page is replaced, then `selector` must appear on the new one."""
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    element.click()
    WebDriverWait(driver, WAIT_S).until(ec.staleness_of(element))
    return wait_for(driver, selector)


def open_page(driver, url, selector):
    driver.get(url)
    return wait_for(driver, selector)


def sign_in(driver, server, key, expect=".topbar"):
    """Sign in and wait for the page it lands on (`expect`: the signed-in top bar, or the login error)."""
    driver.delete_all_cookies()
    open_page(driver, f"{server}/console/login", "#api_key").send_keys(key)
    return click_and_wait(driver, by_css(driver, "#sign-in"), expect)


def sign_out(driver):
    click_and_wait(driver, by_css(driver, "#logout"), "#api_key")


def test_sign_in_and_out(browser, server, demo):
    open_page(browser, f"{server}/console/", "#api_key")
    assert browser.current_url.startswith(f"{server}/console/login")
    shot(browser, "00-login")
    sign_in(browser, server, demo["merchant_key"])
    assert browser.current_url == f"{server}/console/"
    assert "Shop manager" in by_css(browser, ".topbar").text and "default" in by_css(browser, ".topbar").text
    cookie = browser.get_cookie("pgrecs_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    sign_out(browser)
    assert browser.current_url == f"{server}/console/login"
    open_page(browser, f"{server}/console/rules", "#api_key")
    assert browser.current_url.startswith(f"{server}/console/login")


def test_the_demo_prints_the_console_url_and_a_merchant_key_that_signs_in(browser, server, demo):
    assert demo["printed_console_url"] == "http://127.0.0.1:8000/console"
    sign_in(browser, server, demo["printed_merchant_key"])
    assert browser.current_url == f"{server}/console/"
    assert "demo-merchant" in by_css(browser, ".topbar").text
    sign_out(browser)


PAGES = [
    ("01-overview", "/console/", "#placements", "home_for_you"),
    ("02-catalog-health", "/console/catalog", "#worst", "Fix these first"),
    ("03-items", "/console/items", "table", "Most popular items"),
    ("04-item", "/console/items/22728", "#list-pdp_similar", "Contribution per signal"),
    ("04b-item-cart-list", "/console/items/22728?list=cart_complete_the_look", "#list-cart_complete_the_look",
     "Contribution per signal"),
    ("05-users", "/console/users", "table", "Most active users"),
    ("07-rules", "/console/rules", "#rules", "Business rules"),
    ("08-rule-new", "/console/rules/new", "#rule-form", "New rule"),
    ("09-experiments", "/console/experiments", "#experiments", "home-diversity"),
    ("10-experiment", "/console/experiments/home-diversity", "#vs-control", "Difference against the control"),
    ("11-exposure", "/console/exposure", "#exposure-kpis", "Gini by brand"),
    ("12-why-not", "/console/why-not", "form", "Why not?"),
]


def test_every_page_renders_with_the_demo_data(browser, server, demo):
    sign_in(browser, server, demo["merchant_key"])
    for name, path, selector, text in PAGES:
        assert open_page(browser, f"{server}{path}", selector).is_displayed(), path
        assert text in browser.page_source, path
        assert "Something went wrong" not in browser.page_source, path
        shot(browser, name)
    user = demo["users"][0]
    open_page(browser, f"{server}/console/users/{user}", "#history")
    assert len(all_css(browser, "#history tbody tr")) > 0 and all_css(browser, ".placement-list")
    shot(browser, "06-user")
    # the charts are inline SVG drawn on the server: readable without JavaScript
    open_page(browser, f"{server}/console/", "#placements")
    assert len(all_css(browser, "svg.chart")) == 2
    # the overview counts the served traffic
    row = [r.text for r in all_css(browser, "#placements tbody tr") if r.text.startswith("pdp_similar")][0]
    assert f"{len(demo['users'])}" in row


def _rule_row(browser, name):
    rows = [r for r in all_css(browser, "#rules tbody tr") if name in r.text]
    assert len(rows) == 1, [r.text for r in all_css(browser, "#rules tbody tr")]
    return rows[0]


def test_rule_create_preview_apply_changes_the_list_and_is_audited(browser, server, demo):
    sign_in(browser, server, demo["merchant_key"])
    with psycopg.connect(demo["url"]) as conn:
        conn.execute("set pgrecs.tenant = 'default'")
        before = [r[0] for r in conn.execute(
            "select external_id from recs.recommend_for_item(item => '22728', k => 10, placement => 'pdp_similar')"
            " order by rank")]
    target = before[0]
    # a name of its own, so the test can run again on the same data
    name = f"Hide the top pick {secrets.token_hex(3)}"
    open_page(browser, f"{server}/console/rules/new", "#rule-form")
    by_css(browser, "#name").send_keys(name)
    from selenium.webdriver.support.ui import Select

    Select(by_css(browser, "#kind")).select_by_value("block")
    Select(by_css(browser, "#placement")).select_by_value("pdp_similar")
    by_css(browser, "#item").send_keys(target)
    by_css(browser, "#context_items").send_keys("22728")
    heading = click_and_wait(browser, by_css(browser, "#preview"), ".preview-context h2")
    assert f"Preview: {name}" in browser.page_source
    assert "changed" in heading.text
    shot(browser, "13-rule-preview")
    with psycopg.connect(demo["url"]) as conn:
        assert conn.execute("select count(*) from pgrecs.business_rules where name = %s", (name,)).fetchone()[0] == 0
    saved = click_and_wait(browser, by_css(browser, "#apply"), "#saved")
    assert "saved" in saved.text
    shot(browser, "14-rules-after-apply")
    with psycopg.connect(demo["url"]) as conn:
        conn.execute("set pgrecs.tenant = 'default'")
        after = [r[0] for r in conn.execute(
            "select external_id from recs.recommend_for_item(item => '22728', k => 10) order by rank")]
        actor = conn.execute("select actor from pgrecs.business_rule_changes order by change_id desc limit 1").fetchone()[0]
    assert target in before and target not in after
    assert actor.startswith("console: Shop manager")
    audit = by_css(browser, "#audit").text
    assert "console: Shop manager" in audit and "insert" in audit
    # the item page now says why the item is gone
    answer = open_page(browser, f"{server}/console/items/22728?why_not={target}&placement=pdp_similar",
                       ".why-not-answer")
    assert answer.get_attribute("data-reason") == "blocked" and name in answer.text
    shot(browser, "15-item-why-not-blocked")
    # disable it again from the list
    open_page(browser, f"{server}/console/rules", "#rules")
    click_and_wait(browser, _rule_row(browser, name).find_element("css selector", "button.danger"), "#rules")
    assert "disabled" in _rule_row(browser, name).text


def test_why_not_on_the_item_page(browser, server, demo):
    sign_in(browser, server, demo["merchant_key"])
    with psycopg.connect(demo["url"]) as conn:
        conn.execute("set pgrecs.tenant = 'default'")
        shown = conn.execute("select external_id from recs.recommend_for_item(item => '22728', k => 5,"
                             " placement => 'pdp_similar') where rank = 2").fetchone()[0]
    open_page(browser, f"{server}/console/items/22728", "#why_not_item").send_keys(shown)
    by_css(browser, "#why_not_k").clear()
    by_css(browser, "#why_not_k").send_keys("5")
    answer = click_and_wait(browser, by_css(browser, "#why-not-ask"), ".why-not-answer")
    assert answer.get_attribute("data-reason") == "shown" and "position 2" in answer.text
    answer = open_page(browser, f"{server}/console/items/22728?why_not=22728&placement=pdp_similar", ".why-not-answer")
    assert answer.get_attribute("data-reason") == "excluded"
    shot(browser, "16-item-why-not")


def test_a_post_without_the_csrf_token_is_refused(browser, server, demo):
    sign_in(browser, server, demo["merchant_key"])
    open_page(browser, f"{server}/console/rules/new", "#rule-form")
    by_css(browser, "#name").send_keys("Forged")
    by_css(browser, "#brand").send_keys("X")
    browser.execute_script("document.querySelector('#rule-form input[name=csrf_token]').remove()")
    assert not all_css(browser, "#rule-form input[name=csrf_token]")
    error = click_and_wait(browser, by_css(browser, "#preview"), "#error-message")
    assert "security token" in error.text
    shot(browser, "17-csrf-refused")
    open_page(browser, f"{server}/console/rules", "#rules")
    assert "Forged" not in browser.page_source
    # still signed in: the refusal ended nothing
    assert "Shop manager" in by_css(browser, ".topbar").text


def test_a_key_of_another_tenant_sees_none_of_this_shop(browser, server, demo):
    sign_in(browser, server, demo["rival_key"])
    assert "rival" in by_css(browser, ".topbar").text
    assert by_css(browser, ".kpi .value").text == "1"
    assert "No item '22728'" in open_page(browser, f"{server}/console/items/22728", "#error-message").text
    open_page(browser, f"{server}/console/rules", "#rules")
    assert "Hide the top pick" not in browser.page_source
    open_page(browser, f"{server}/console/experiments", ".topbar")
    assert "home-diversity" not in browser.page_source
    open_page(browser, f"{server}/console/users", ".topbar")
    assert demo["users"][0] not in browser.page_source
    shot(browser, "18-other-tenant")


def test_a_key_without_the_merchant_scope_is_refused(browser, server, demo):
    error = sign_in(browser, server, demo["read_key"], expect="#login-error")
    assert "lacks the merchant scope" in error.text
    open_page(browser, f"{server}/console/", "#api_key")
    assert browser.current_url.startswith(f"{server}/console/login")
    shot(browser, "19-scope-refused")


def test_landing_page_and_offline_docs(browser, server):
    browser.get(f"{server}/")
    assert "API documentation" in browser.page_source
    shot(browser, "20-landing")
    # Swagger UI draws the operations with JavaScript after the load event
    open_page(browser, f"{server}/docs", ".opblock")
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(r.startswith(server) for r in resources), resources
    shot(browser, "21-docs")
