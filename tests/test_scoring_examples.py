"""The analyst examples in examples/analyst/*.sql run through psql against the scoring world."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import scoring_world as world
from pgrecs.embedded import psql_path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "analyst"
PSQL = psql_path()


@pytest.fixture
def psql(db_url, conn):
    ids = world.build(conn)
    uid = world.add_user(conn, "u1")
    world.add_event(conn, uid, ids["A"], "view")
    conn.execute(
        "insert into pgrecs.business_rules (kind, name, item_id, position) values ('pin', 'house pick', %s, 1)",
        (ids["G"],),
    )
    conn.execute(
        "insert into pgrecs.recommendation_requests (endpoint, placement, k, item_ids) values ('item', 'pdp_similar', 10, '{}')")
    conn.commit()

    def run(name: str) -> str:
        out = subprocess.run(
            [PSQL, "-X", "-v", "ON_ERROR_STOP=1", "-v", "item=A", "-v", "user=u1", "-v", "likes=A,B",
             "-v", "dislikes=D", "-d", db_url, "-f", str(EXAMPLES / name)],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    return run


def test_every_example_is_covered():
    assert {p.name for p in EXAMPLES.glob("*.sql")} == {
        "top10_for_user.sql", "top10_for_item.sql", "with_and_without_rules.sql", "explain_breakdown.sql",
        "more_like_these.sql", "served_lists_and_clicks.sql"}


def test_analyst_examples_run(psql):
    assert 'similar to "Alpha runner" you viewed' in psql("top10_for_user.sql")
    assert "Golf shirt" in psql("top10_for_item.sql")  # the pinned item
    assert "pinned at position 1: house pick" in psql("with_and_without_rules.sql")
    breakdown = psql("explain_breakdown.sql")
    assert "semantic" in breakdown and "Alpha runner" in breakdown
    assert "(your example)" in psql("more_like_these.sql")
    assert "pdp_similar" in psql("served_lists_and_clicks.sql")
