"""app/dbt.py: connection env vars from any URL, one-line errors naming the failing node, the CLI."""

from __future__ import annotations

import re

import psycopg
import pytest

from pgrecs import dbt
from pgrecs.errors import PgrecsError


def test_env_from_unix_socket_url():
    env = dbt.dbt_env("postgresql://postgres:@/postgres?host=/tmp/some/pgdata")
    assert env["PGRECS_DBT_HOST"] == "/tmp/some/pgdata"
    assert env["PGRECS_DBT_DBNAME"] == "postgres" and env["PGRECS_DBT_USER"] == "postgres"
    assert env["PGRECS_DBT_PORT"] == "5432"


def test_env_from_tcp_url_and_conninfo():
    env = dbt.dbt_env("postgresql://app:s3cret@db.example:6543/shop?sslmode=require")
    assert (env["PGRECS_DBT_HOST"], env["PGRECS_DBT_PORT"], env["PGRECS_DBT_USER"], env["PGRECS_DBT_PASSWORD"],
            env["PGRECS_DBT_DBNAME"], env["PGRECS_DBT_SSLMODE"]) == ("db.example", "6543", "app", "s3cret", "shop", "require")
    env = dbt.dbt_env("host=h port=1 dbname=d user=u")
    assert (env["PGRECS_DBT_HOST"], env["PGRECS_DBT_DBNAME"]) == ("h", "d")


def test_bad_url_is_a_clear_error():
    with pytest.raises(PgrecsError, match="cannot read the database URL"):
        dbt.dbt_env("postgresql://[broken")


@pytest.mark.slow
def test_failing_model_is_named_in_one_line(db_url):
    # break a source the staging model reads: the error names the model
    with psycopg.connect(db_url) as conn:
        conn.execute("alter table pgrecs.items rename column title to title_gone")
    with pytest.raises(PgrecsError) as info:
        dbt.run(db_url, "run", select="stg_pgrecs__items")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("dbt run failed at model stg_pgrecs__items")


@pytest.mark.slow
def test_refresh_and_audit_cli(cli, db_url, tmp_path):
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into pgrecs.items (external_id, title, description) values"
                     " ('x1', 'Blue &amp; Green Mug', 'A mug.'), ('x2', 'Blue & Green Mug', null)")
        conn.execute("insert into pgrecs.users (external_id) values ('u1')")
        conn.execute("insert into pgrecs.events (user_id, item_id, event_type, occurred_at, dedup_key)"
                     " select 1, item_id, 'view', now(), gen_random_uuid() from pgrecs.items")
    result = cli("refresh", "--quiet", "--no-test")
    assert result.exit_code == 0, result.output
    assert "full refresh, tenant default: 2 co-occurrence lists recomputed" in result.output
    out = tmp_path / "audit.md"
    result = cli("audit", "--no-build", "--out", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "| items | 2 |" in text and "| items sharing their exact title | 2 (100.0%) |" in text
    html_out = tmp_path / "audit.html"
    assert cli("audit", "--no-build", "--out", str(html_out)).exit_code == 0
    assert html_out.read_text().startswith("<!doctype html>")


@pytest.mark.slow  # `pgrecs audit` builds its models with dbt first
def test_audit_report_for_a_merchant(cli, db_url, client, tmp_path):
    """Styled, self-contained HTML: both charts inline, and the items with findings most traffic first."""
    complete = ("x5", "Walnut Serving Board", "A large walnut serving board, oiled by hand, for bread, cheese and more.",
                "Oakhouse", ["Kitchen", "Boards"], 40, "http://img/x5.jpg")
    with psycopg.connect(db_url) as conn:
        for ext, title, desc, brand, cats, price, image in [
                ("x1", "Blue &amp; Green Mug", "A mug.", None, [], None, None),
                ("x2", "Blue & Green Mug", None, None, [], None, None),
                ("x3", "Red Kettle", "A red kettle.", "Kettleco", ["Kitchen"], 25, None),
                ("x4", "12345 ###", None, None, [], None, None), complete]:
            conn.execute("insert into pgrecs.items (external_id, title, description, brand, category_path, price,"
                         " image_url) values (%s, %s, %s, %s, %s, %s, %s)", (ext, title, desc, brand, cats, price, image))
        conn.execute("insert into pgrecs.users (external_id) values ('u1')")
        for ext, events in (("x1", 1), ("x2", 3), ("x3", 5), ("x5", 10)):
            conn.execute("insert into pgrecs.events (user_id, item_id, event_type, occurred_at, dedup_key)"
                         " select 1, item_id, 'view', now(), gen_random_uuid()"
                         " from pgrecs.items, generate_series(1, %s) where external_id = %s", (events, ext))
    out = tmp_path / "audit.html"
    result = cli("audit", "--out", str(out))
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.startswith("<!doctype html>") and "<style>" in page and "--accent" in page
    assert not re.search(r"<script|<link|src=\"http|@import", page)  # nothing fetched
    charts = re.findall(r'<svg role="img" aria-label="([^"]+)"', page)
    assert charts == ["Items per quality score", "Share of items per finding"]
    # the fix-first list: every item with a finding, most events first; x5 has none to fix
    fix = page[page.index('id="fix-first"'):page.index('id="quality-distribution"')]
    rows = re.findall(r'<td class="mono">(\w+)</td><td>[^<]*</td>\s*<td class="num">(\d+)</td>', fix)
    assert rows == [("x3", "5"), ("x2", "3"), ("x1", "1"), ("x4", "0")]
    assert "not embeddable" in fix  # x4: no words
    # the Markdown report (terminal) carries the same ordered list
    assert re.findall(r"^\| \d+ \| (x\d) \|", result.output, re.M) == ["x3", "x2", "x1", "x4"]
    # the same list, from SQL and on the console's catalog-health page
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select external_id, events from recs.catalog_fix_first(n => 2)").fetchall() == []
        conn.execute("select set_config('pgrecs.tenant', 'default', false)")
        assert conn.execute("select external_id, events from recs.catalog_fix_first(n => 2)").fetchall() == [
            ("x3", 5), ("x2", 3)]
    from test_console import key, sign_in

    sign_in(client, key(db_url)[1])
    page = client.get("/console/catalog").text
    listed = page[page.index('id="worst"'):page.index('id="duplicates"')]
    assert re.findall(r">(x\d)</a></td>", listed) == ["x3", "x2", "x1", "x4"]
