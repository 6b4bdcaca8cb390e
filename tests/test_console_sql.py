"""The console's SQL (sql/062_rules.sql, sql/066_console.sql) against hand-computed answers."""

from __future__ import annotations

import psycopg
import pytest

import scoring_world as world


@pytest.fixture
def conn(world_sql):
    """The world is built once (conftest `world_db`); each test changes it inside a transaction that is rolled back."""
    return world_sql


@pytest.fixture
def ids(world_db):
    return world_db.ids


def test_gini_by_hand(conn):
    gini = lambda xs: conn.execute("select pgrecs.gini(%s::float8[])", (xs,)).fetchone()[0]  # noqa: E731
    assert gini([1, 1, 1, 1]) == 0
    # sorted 0,0,0,4: (2*4 - 4 - 1) * 4 / (4 * 4) = 0.75
    assert gini([4, 0, 0, 0]) == pytest.approx(0.75)
    # 1,2,3: ((2-4)*1 + 0*2 + 2*3) / (3 * 6) = 4/18
    assert gini([3, 1, 2]) == pytest.approx(4 / 18)
    assert gini([]) is None and gini([0, 0]) is None


def _serve(conn, placement, items, ids, user=None):
    return conn.execute(
        "insert into pgrecs.recommendation_requests (endpoint, placement, user_id, k, item_ids)"
        " values ('item', %s, %s, %s, %s) returning request_id",
        (placement, user, len(items), [ids[x] for x in items])).fetchone()[0]


def test_exposure_and_placement_performance_by_hand(conn, ids):
    uid = world.add_user(conn, "u1")
    r1 = _serve(conn, "pdp_similar", ["A", "B"], ids, uid)
    _serve(conn, "pdp_similar", ["A", "C"], ids, uid)
    _serve(conn, "home_for_you", ["A", "P"], ids, uid)
    for item, kind, request in [("B", "click", r1), ("B", "purchase", r1), ("G", "click", r1)]:
        conn.execute("insert into pgrecs.events (user_id, item_id, event_type, occurred_at, dedup_key, request_id)"
                     " values (%s, %s, %s, now(), gen_random_uuid(), %s)", (uid, ids[item], kind, str(r1)))
    perf = {r[0]: r[1:7] for r in conn.execute("select * from recs.placement_performance(days => 7)")}
    # 2 lists of 2 items; one click and one purchase on a listed item (G was not on the list)
    assert perf["pdp_similar"] == (2, 4, 1, 1, 0.25, 0.5)
    assert perf["home_for_you"] == (1, 2, 0, 0, 0.0, 0.0)
    assert perf["t"][0] == 0
    row = conn.execute("select requests, active_items, items_shown, exposures, never_shown, gini_items,"
                       " brands, categories from recs.exposure(days => 30)").fetchone()
    # 11 active items (I is inactive); A shown 3 times, B C P once: 7 zeros and 1,1,1,3
    n, total = 11, 6.0
    values = sorted([0] * 7 + [1, 1, 1, 3])
    expected_gini = sum((2 * (i + 1) - n - 1) * v for i, v in enumerate(values)) / (n * total)
    assert row[:5] == (3, 11, 4, 6, 7) and row[5] == pytest.approx(expected_gini)
    assert row[6:] == (5, 2)
    by_brand = {r[0]: r[1:] for r in conn.execute("select * from recs.exposure_by(dimension => 'brand', days => 30)")}
    assert by_brand["Acme"][:2] == (4, 4) and by_brand["Zed"][:2] == (1, 1)
    assert by_brand["Acme"][2] == pytest.approx(4 / 6)
    never = [r[1] for r in conn.execute("select * from recs.never_shown_items(days => 30, n => 3)")]
    assert never == ["F", "G", "J"]  # the most popular unshown first (F 50, G 5, J 4)
    curve = conn.execute("select item_share, exposure_share from recs.exposure_curve(days => 30, points => 11)").fetchall()
    assert curve[0] == (0, 0) and curve[-1] == (1, 1)
    assert curve[7] == (pytest.approx(7 / 11), 0) and curve[8][1] == pytest.approx(1 / 6)


def _plan(conn, query: str) -> str:
    # seq scans off: on a test-sized table the planner rightly prefers them, and the question here
    # is whether the index can serve the lookup at all
    with conn.transaction():
        conn.execute("set local enable_seqscan = off")
        return "\n".join(r[0] for r in conn.execute("explain (costs off) " + query))


def test_served_lists_are_found_through_their_indexes(conn, ids):
    experiment = conn.execute("insert into pgrecs.experiments (name, salt, started_at) values ('x', 'x', now() - interval '1 hour')"
                              " returning experiment_id").fetchone()[0]
    conn.execute("insert into pgrecs.experiment_variants (experiment_id, name, placement, is_control, position)"
                 " values (%s, 'control', 'pdp_similar', true, 1), (%s, 'other', 't', false, 2)", (experiment, experiment))
    uid = world.add_user(conn, "u1")
    request = _serve(conn, "pdp_similar", ["A", "B"], ids, uid)
    conn.execute("insert into pgrecs.events (user_id, item_id, event_type, occurred_at, dedup_key, request_id)"
                 " values (%s, %s, 'impression', now(), gen_random_uuid(), %s)", (uid, ids["A"], str(request)))
    # a shop's history: many events of the listed items that cite no list
    conn.execute("insert into pgrecs.events (user_id, item_id, event_type, occurred_at, dedup_key)"
                 " select %s, i.item_id, 'view', now() - g * interval '1 second', gen_random_uuid()"
                 " from generate_series(1, 2000) g, pgrecs.items i where i.external_id in ('A', 'B')", (uid,))
    conn.execute("insert into pgrecs.recommendation_requests (endpoint, placement, user_id, k, item_ids)"
                 " select 'item', 'pdp_similar', %s, 1, array[%s]::bigint[] from generate_series(1, 1000)", (uid, ids["A"]))
    conn.execute("analyze pgrecs.events")
    conn.execute("analyze pgrecs.recommendation_requests")
    # the event log by cited request (events_request), the request log by its uuid primary key
    assert "Index Scan using events_request on events" in _plan(conn, "select * from recs.placement_performance(days => 7)")
    plan = _plan(conn, "select * from recs.experiment_user_outcomes(experiment => 'x')")
    assert "Index Scan using recommendation_requests_pkey" in plan, plan


def test_only_the_canonical_text_of_a_uuid_names_a_served_list(conn, ids):
    request_uuid = lambda text: conn.execute("select pgrecs.request_uuid(%s)", (text,)).fetchone()[0]  # noqa: E731
    served = _serve(conn, "pdp_similar", ["A"], ids)
    assert request_uuid(str(served)) == served and request_uuid(f"  {served} ") == served
    # what request_id::text never prints names nothing (the rule the dbt marts use), and is no error
    for other in (str(served).upper(), str(served).replace("-", ""), "{" + str(served) + "}", "order-42", "", "  ", f"{served}\n"):
        assert request_uuid(other) is None, other
    assert request_uuid(None) is None
    volatility = conn.execute("select provolatile, proparallel from pg_proc where oid = 'pgrecs.request_uuid(text)'::regprocedure")
    assert volatility.fetchone() == ("s", "s")


def test_rule_audit_trail_records_every_change_with_its_actor(conn, ids):
    rule_id = conn.execute("select recs.create_rule(name => 'acme up', kind => 'boost', brand => 'Acme', factor => 1.5)").fetchone()[0]
    conn.execute("select set_config('pgrecs.actor', 'console: Jo (key 7)', true)")
    conn.execute("select recs.update_rule(rule_id => %s, name => 'acme up', kind => 'boost', brand => 'Acme',"
                 " factor => 2, ends_at => '2030-01-01')", (rule_id,))
    assert conn.execute("select recs.set_rule_enabled(rule_id => %s, enabled => false)", (rule_id,)).fetchone()[0] is True
    assert conn.execute("select recs.set_rule_enabled(rule_id => %s, enabled => false)", (rule_id,)).fetchone()[0] is False
    conn.execute("delete from pgrecs.business_rules where rule_id = %s", (rule_id,))
    trail = conn.execute("select action, actor, changed_fields, old_row ->> 'factor', new_row ->> 'factor'"
                         " from recs.business_rule_changes() order by change_id").fetchall()
    user = conn.execute("select session_user").fetchone()[0]
    assert trail == [
        ("insert", user, ["brand", "enabled", "factor", "kind", "name", "rule_id"], None, "1.5"),
        ("update", "console: Jo (key 7)", ["ends_at", "factor"], "1.5", "2"),
        ("update", "console: Jo (key 7)", ["enabled"], "2", "2"),
        ("delete", "console: Jo (key 7)", ["brand", "enabled", "ends_at", "factor", "kind", "name", "rule_id"], "2", None),
    ]


def test_rule_functions_refuse_bad_rules_in_one_line(conn, ids):
    for call, message in [
        ("recs.create_rule(name => 'x', kind => 'nudge', brand => 'Acme')", "kind must be boost, pin or block"),
        ("recs.create_rule(name => 'x', kind => 'boost', brand => 'Acme')", "a boost needs a factor above 0"),
        ("recs.create_rule(name => 'x', kind => 'pin', item => 'A')", "a pin needs an item and a position"),
        ("recs.create_rule(name => 'x', kind => 'block')", "a rule must match something"),
        ("recs.create_rule(name => 'x', kind => 'block', item => 'NOPE')", "unknown item: NOPE"),
        ("recs.create_rule(name => 'x', kind => 'block', brand => 'A', placement => 'nope')", "unknown placement: nope"),
        ("recs.create_rule(name => 'x', kind => 'block', brand => 'A', starts_at => '2030-01-02', ends_at => '2030-01-01')",
         "the window must start before it ends"),
        ("recs.update_rule(rule_id => 999, name => 'x', kind => 'block', brand => 'A')", "unknown rule: 999"),
        ("recs.set_rule_enabled(rule_id => 999, enabled => true)", "unknown rule: 999"),
    ]:
        with pytest.raises(psycopg.Error, match=message):
            with conn.transaction():
                conn.execute(f"select {call}")
    assert conn.execute("select count(*) from pgrecs.business_rules").fetchone()[0] == 0


def test_rule_states_and_preview_contexts(conn, ids):
    conn.execute("select recs.create_rule(name => 'soon', kind => 'block', brand => 'Acme', starts_at => now() + interval '1 day')")
    conn.execute("select recs.create_rule(name => 'over', kind => 'block', brand => 'Acme', ends_at => now() - interval '1 day',"
                 " starts_at => now() - interval '2 days')")
    conn.execute("select recs.create_rule(name => 'off', kind => 'block', brand => 'Acme', enabled => false)")
    conn.execute("select recs.create_rule(name => 'on', kind => 'boost', brand => 'Acme', factor => 2)")
    states = dict(conn.execute("select name, status from recs.business_rules()").fetchall())
    assert states == {"soon": "scheduled", "over": "ended", "off": "disabled", "on": "live"}
    # contexts where a rule on item C can change a list: the items with C high in a neighbour list,
    # by its best score there (D 0.9 semantic, A 0.8 semantic, N 0.6)
    contexts = conn.execute("select context_kind, external_id from recs.rule_preview_contexts(item => 'C', n => 2)").fetchall()
    assert contexts == [("item", "D"), ("item", "A")]


def test_preview_leaves_no_trace(conn, ids):
    from pgrecs import rules

    before = conn.execute("select count(*) from pgrecs.business_rule_changes").fetchone()[0]
    results = rules.preview(conn, rules.Change("save", rules.rule_from_form(
        {"name": "hide B", "kind": "block", "item": "B", "placement": "t"})), "test", [("item", "A")], k=3, placement="t")
    assert [x["external_id"] for x in results[0]["before"]] == ["B", "C", "N"]
    assert [x["external_id"] for x in results[0]["after"]] == ["C", "N", "E"]
    assert results[0]["entered"] == ["E"] and results[0]["left"] == ["B"] and results[0]["changed"]
    assert conn.execute("select count(*) from pgrecs.business_rules").fetchone()[0] == 0
    assert conn.execute("select count(*) from pgrecs.business_rule_changes").fetchone()[0] == before


def test_cli_rules_round_trip(cli, db_url):
    from pgrecs.db import connect

    with connect(db_url) as own:  # the CLI commits: a world of its own
        world.build(own)
    assert cli("rules", "list").output.strip() == "no rules"
    out = cli("rules", "add", "--name", "Summer", "--kind", "boost", "--brand", "Acme", "--factor", "1.5",
              "--ends", "2030-09-01").output
    assert out.strip() == "added rule 1"
    listed = cli("rules", "list").output
    assert "live" in listed and "'Summer'" in listed and "brand Acme" in listed and "2030-09-01" in listed
    preview = cli("rules", "preview", "--rule", "1", "--disable-rule", "--context-item", "A", "--placement", "t", "-k", "3")
    assert preview.exit_code == 0 and "item A (t)" in preview.output
    assert cli("rules", "disable", "1").output.strip() == "rule 1 disabled"
    assert cli("rules", "disable", "1").exit_code == 0  # again: safe
    assert "disabled" in cli("rules", "list").output
    trail = cli("rules", "list", "--changes").output.splitlines()
    assert len(trail) == 2 and "update" in trail[0] and "cli: " in trail[0] and "(enabled)" in trail[0]
    bad = cli("rules", "add", "--name", "x", "--kind", "pin", "--item", "A")
    assert bad.exit_code == 1 and bad.output.strip() == "error: a pin needs an item and a position from 1 to 100"
    bad = cli("rules", "disable", "77")
    assert bad.exit_code == 1 and "unknown rule: 77" in bad.output
