"""Golden files a reviewer reads: the public SQL contract and the plans of the hot queries.

A change to any `recs.*` signature, result or volatility, or to a plan of item recommendations,
user recommendations or unfiltered similar items, shows up as a diff of tests/test_golden/*.txt.
After an intended change: `pytest tests/test_golden.py --force-regen`, and review the diff.
"""

from __future__ import annotations

import re

import scoring_world as world

VOLATILITY = {"i": "immutable", "s": "stable", "v": "volatile"}


def test_public_sql_api(sql, file_regression):
    rows = sql.execute(
        """
        select p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid),
               pg_catalog.pg_get_function_result(p.oid), p.provolatile, p.proparallel = 's', p.prosecdef
        from pg_catalog.pg_proc as p
        join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
        where n.nspname = 'recs'
        order by 1, 2
        """).fetchall()
    lines = []
    for name, arguments, result, volatility, parallel_safe, definer in rows:
        traits = [VOLATILITY[volatility], *(["parallel safe"] if parallel_safe else []),
                  *(["security definer"] if definer else [])]
        lines.append(f"recs.{name}({arguments})\n    returns {result}\n    {', '.join(traits)}")
    file_regression.check("\n".join(lines) + "\n", basename="recs_api", extension=".txt")


def _plans(conn, query: str, params: tuple) -> str:
    """Every statement the call runs, nested ones included, as auto_explain plans them (generic
    plans, as a connection serves them after its first calls), without costs or timings."""
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    for setting in ("load 'auto_explain'", "set auto_explain.log_min_duration = 0",
                    "set auto_explain.log_nested_statements = on", "set auto_explain.log_level = notice",
                    "set auto_explain.log_format = text", "set plan_cache_mode = force_generic_plan",
                    "set max_parallel_workers_per_gather = 0"):
        conn.execute(setting)
    conn.execute(query, params).fetchall()
    conn.execute("reset auto_explain.log_min_duration")
    plans = []
    for notice in notices:
        if "Query Text:" not in notice:
            continue
        text = notice.split("Query Text:", 1)[1]
        text = re.sub(r"\s*\(cost=[^)]*\)", "", text)
        text = re.sub(r"^Query Parameters:.*\n", "", text, flags=re.M)  # the values, not the plan
        text = re.sub(r"[ \t]+$", "", text, flags=re.M)
        plans.append("Query Text:" + text.rstrip())
    return "\n\n".join(plans) + "\n"


def test_item_recommendation_plans(conn, file_regression):
    world.build(conn)
    conn.commit()
    text = _plans(conn, "select * from recs.recommend_for_item(item => %s, k => 5, placement => 'pdp_similar')", ("A",))
    assert "Index" in text
    file_regression.check(text, basename="plan_recommend_for_item", extension=".txt")


def test_user_recommendation_plans(conn, file_regression):
    world.build(conn)
    user = world.add_user(conn, "u1")
    for item in ("A", "F"):
        item_id = conn.execute("select item_id from pgrecs.items where external_id = %s", (item,)).fetchone()[0]
        world.add_event(conn, user, item_id, "purchase")
    conn.commit()
    text = _plans(conn, "select * from recs.recommend_for_user(user_id => %s, k => 5, placement => 'home_for_you')",
                  ("u1",))
    assert "Index" in text
    file_regression.check(text, basename="plan_recommend_for_user", extension=".txt")


def test_unfiltered_similar_items_plan(conn, file_regression):
    ids = world.build(conn)
    conn.commit()
    text = _plans(conn, "select * from recs.similar_items(item_id => %s, k => 5)", (ids["A"],))
    assert "Index" in text
    file_regression.check(text, basename="plan_similar_items", extension=".txt")
