"""app/dbt.py: connection env vars from any URL, one-line errors naming the failing node, the CLI."""

from __future__ import annotations

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
