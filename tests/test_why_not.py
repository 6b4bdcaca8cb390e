"""recs.why_not on the hand-made scoring world: each reason constructed and its answer checked,
and the answer agrees with what pgrecs.rank_items actually serves."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

import scoring_world as world


@pytest.fixture
def conn(world_sql):
    """The world is built once (conftest `world_db`); each test changes it inside a transaction that is rolled back."""
    return world_sql


@pytest.fixture
def ids(world_db):
    return world_db.ids


def placement(conn, **columns):
    for column, value in columns.items():
        conn.execute(psycopg.sql.SQL("update pgrecs.placements set {} = %s where placement = 't'").format(
            psycopg.sql.Identifier(column)), (Jsonb(value) if isinstance(value, dict) else value,))


def why(conn, item, *, ctx_item="A", ctx_user=None, k=10, place="t", filters=None):
    return conn.execute(
        "select reason, detail, rank, score, kth_score, rule_id, facts from recs.why_not(item => %s, placement => %s,"
        " context_item => %s, context_user => %s, k => %s, filters => %s)",
        (item, place, None if ctx_user else ctx_item, ctx_user, k, Jsonb(filters or {}))).fetchall()


def served(conn, ctx_item, k=10, place="t"):
    return [r[0] for r in conn.execute(
        "select external_id from recs.recommend_for_item(item => %s, k => %s, placement => %s) order by rank",
        (ctx_item, k, place)).fetchall()]


def test_shown_with_its_position_and_score(conn, ids):
    # semantic only, in stock: I inactive and H out of stock drop, B C N E follow A's list
    assert served(conn, "A", k=3) == ["B", "C", "N"]
    [(reason, detail, rank, score, kth, _, _)] = why(conn, "C", k=3)
    assert (reason, rank) == ("shown", 2)
    assert score == pytest.approx(0.8 / 0.9, abs=1e-6) and kth == pytest.approx(0.7 / 0.9, abs=1e-6)
    assert detail.startswith("shown at position 2 of 3")


def test_item_level_reasons(conn, ids):
    assert [r[0] for r in why(conn, "A")] == ["excluded"]
    assert "the item the list is shown for" in why(conn, "A")[0][1]
    assert [r[0] for r in why(conn, "I")] == ["inactive"]
    [(reason, detail, *_)] = why(conn, "H")
    assert reason == "out_of_stock" and "stock 0" in detail
    [(reason, detail, *_)] = why(conn, "B", filters={"category": "Shoes > Trail"})
    assert reason == "outside_category" and "'Shoes > Trail'" in detail and "Shoes > Running" in detail
    assert [r[0] for r in why(conn, "B", filters={"price_max": 50})] == ["price"]
    assert [r[0] for r in why(conn, "B", filters={"brand": "Bolt"})] == ["brand"]
    assert [r[0] for r in why(conn, "B", filters={"exclude": [ids["B"]]})] == ["excluded"]
    # an item failing several tests gets each of them
    assert [r[0] for r in why(conn, "I", filters={"category": "Shoes > Trail"})] == ["inactive", "outside_category"]


def test_blocked_by_each_rule(conn, ids):
    rule_id = conn.execute("select recs.create_rule(name => 'no acme', kind => 'block', brand => 'Acme')").fetchone()[0]
    conn.execute("select recs.create_rule(name => 'not on t', kind => 'block', item => 'B', placement => 'more_like_these')")
    later = conn.execute("select recs.create_rule(name => 'later', kind => 'block', item => 'B',"
                         " starts_at => now() + interval '1 day')").fetchone()[0]
    rows = why(conn, "B")
    assert [(r[0], r[5]) for r in rows] == [("blocked", rule_id)]
    assert "no acme" in rows[0][1]
    assert "B" not in served(conn, "A")
    conn.execute("select recs.set_rule_enabled(rule_id => %s, enabled => false)", (rule_id,))
    assert why(conn, "B")[0][0] == "shown" and later


def test_no_embedding_says_why(conn, ids):
    # G has no embedding and semantic is the placement's only signal
    [(reason, detail, *_)] = why(conn, "G")
    assert reason == "no_embedding" and "not embedded yet" in detail and "test-3d" in detail
    model_id = conn.execute("select model_id from pgrecs.embedding_models where name = 'test-3d'").fetchone()[0]
    conn.execute("insert into pgrecs.embedding_queue (item_id, model_id) values (%s, %s)", (ids["G"], model_id))
    assert "waiting in the embedding queue" in why(conn, "G")[0][1]
    conn.execute("insert into pgrecs.not_embeddable (item_id, model_id, reason, text_sha256) values (%s, %s,"
                 " 'placeholder text', '\\x00')", (ids["G"], model_id))
    [(reason, detail, _, _, _, _, facts)] = why(conn, "G")
    assert reason == "no_embedding" and "not embeddable: placeholder text" in detail
    assert facts["not_embeddable"] == "placeholder text"


def test_not_a_candidate_signal_by_signal(conn, ids):
    placement(conn, weights={"cooccurrence": 1})
    [(reason, detail, *_)] = why(conn, "G")
    assert reason == "not_candidate"
    assert detail == 'not a candidate of any signal: cooccurrence: not a neighbour of "Alpha runner"'
    # in the list, beyond the pool taken per anchor
    placement(conn, weights={"semantic": 1}, pool_sizes={"semantic": 2})
    [(reason, detail, *_)] = why(conn, "C")
    assert reason == "not_candidate" and 'semantic: rank 4 in the list of "Alpha runner", beyond the 2 taken' in detail


def test_a_candidate_without_score(conn, ids):
    # N has popularity 0: the popularity list proposes it, but the signal scores only items above 0
    conn.execute("insert into pgrecs.item_signals (item_id, popularity, trending, quality_score) values (%s, 0, 0, 0.9)",
                 (ids["N"],))
    placement(conn, weights={"popularity": 1}, pool_sizes={"popularity": 50})
    assert why(conn, "N")[0][0] == "no_score"


def test_ranked_below_k_with_the_kth_score(conn, ids):
    assert served(conn, "A", k=2) == ["B", "C"]
    [(reason, detail, rank, score, kth, _, facts)] = why(conn, "N", k=2)
    assert (reason, rank) == ("ranked", 3)
    assert score == pytest.approx(0.7 / 0.9, abs=1e-6) and kth == pytest.approx(0.8 / 0.9, abs=1e-6)
    assert "ranked 3 of 4" in detail and "the 2-th shown scores 0.8889" in detail
    assert facts["contributions"]["semantic"]["signal_rank"] == 3
    # the rank is where a longer list puts it
    assert served(conn, "A", k=3)[2] == "N"


def test_removed_by_a_category_cap(conn, ids):
    placement(conn, max_per_category=1, category_level=2)
    # B (Running) first; C, also Running, is capped, so E (Trail) takes the second place
    assert served(conn, "A", k=2) == ["B", "E"]
    [(reason, detail, rank, *_ , facts)] = why(conn, "C", k=2)
    assert reason == "capped" and facts["cap"] == "category" and facts["category"] == "Running" and rank == 2
    assert "at most 1 items of category Running" in detail


def test_removed_by_diversity(conn, ids):
    placement(conn, mmr_lambda=0.5)
    # C is nearly B's direction: after B, the dissimilar N beats it although less relevant
    assert served(conn, "A", k=2) == ["B", "N"]
    [(reason, detail, _, _, _, _, facts)] = why(conn, "C", k=2)
    assert reason == "mmr" and facts["most_similar"] == "B" and facts["chosen_instead"] == "N"
    assert facts["similarity"] == pytest.approx(0.99, abs=0.01)


def test_pushed_out_by_a_pin(conn, ids):
    conn.execute("select recs.create_rule(name => 'socks first', kind => 'pin', item => 'G', pin_position => 1)")
    assert served(conn, "A", k=2) == ["G", "B"]
    [(reason, detail, _, _, _, _, facts)] = why(conn, "C", k=2)
    assert reason == "pinned_out" and facts["pins"] == ["G"]
    assert why(conn, "G", k=2)[0][0] == "shown"


def test_user_context_history_and_purchases(conn, ids):
    uid = world.add_user(conn, "u1")
    world.add_event(conn, uid, ids["A"], "view", "2 hours")
    world.add_event(conn, uid, ids["J"], "purchase", "3 hours")
    assert "in the user's history" in why(conn, "A", ctx_user="u1")[0][1]
    assert "the user bought it" in why(conn, "J", ctx_user="u1")[0][1]
    listed = [r[0] for r in conn.execute(
        "select external_id from recs.recommend_for_user(user_id => 'u1', k => 3, placement => 't') order by rank")]
    assert listed and [(r[0], r[2]) for r in why(conn, listed[0], ctx_user="u1", k=3)] == [("shown", 1)]


def test_a_new_visitor_is_explained_against_the_cold_start_list(conn, ids):
    placement(conn, weights={"semantic": 1, "popularity": 0.2})  # the cold-start list is popularity
    listed = [r[0] for r in conn.execute(
        "select external_id from recs.recommend_for_user(user_id => 'ghost', k => 3, placement => 't') order by rank")]
    assert len(listed) == 3
    for position, item in enumerate(listed, start=1):
        assert [(r[0], r[2]) for r in why(conn, item, ctx_user="ghost", k=3)] == [("shown", position)]
    outside = [r[0] for r in conn.execute("select external_id from pgrecs.items where active and not (external_id = any(%s))",
                                          (listed,))]
    assert all(why(conn, item, ctx_user="ghost", k=3)[0][0] != "shown" for item in outside)


def test_bad_input_is_one_clear_error(conn, ids):
    for kwargs, message in [({"ctx_item": "nope"}, "unknown item: nope"), ({"k": 0}, "k must be between 1 and 100"),
                            ({"place": "nope"}, "unknown placement: nope")]:
        with pytest.raises(psycopg.Error, match=message):
            with conn.transaction():
                why(conn, "B", **kwargs)
    with pytest.raises(psycopg.Error, match="unknown item: ZZ"):
        with conn.transaction():
            why(conn, "ZZ")


@pytest.mark.parametrize("shape", [
    {}, {"mmr_lambda": 0.5}, {"max_per_brand": 1}, {"max_per_category": 1, "category_level": 2},
    {"weights": {"semantic": 1, "cooccurrence": 0.6, "ease": 0.5, "popularity": 0.2}, "pool_sizes": {}},
])
def test_agrees_with_rank_items_on_every_item(conn, ids, shape):
    """Every item, every context: 'shown at p' exactly for the items the real ranking returns."""
    placement(conn, **shape)
    for ctx in ("A", "D", "N", "F"):
        for k in (1, 2, 3):
            listed = served(conn, ctx, k=k)
            for ext in world.ITEMS:
                rows = why(conn, ext, ctx_item=ctx, k=k)
                reasons = [r[0] for r in rows]
                if ext in listed:
                    assert rows == [rows[0]] and reasons == ["shown"] and rows[0][2] == listed.index(ext) + 1, (ctx, k, ext)
                else:
                    assert reasons and "shown" not in reasons, (ctx, k, ext, reasons)


def test_why_not_is_stable_and_commented(conn):
    row = conn.execute("select p.provolatile, obj_description(p.oid, 'pg_proc') from pg_proc p"
                       " where p.oid = 'recs.why_not(text, text, text, text, integer, jsonb)'::regprocedure").fetchone()
    assert row[0] == "s" and "rank_items" in row[1]


def test_cli_why_not(cli, db_url):
    from pgrecs.db import connect

    with connect(db_url) as own:  # the CLI reads committed rows: a world of its own
        world.build(own)
    result = cli("why-not", "N", "--placement", "t", "--context-item", "A", "-k", "2")
    assert result.exit_code == 0 and result.output.startswith("ranked: ranked 3 of 4")
    result = cli("why-not", "N", "--placement", "t")
    assert result.exit_code == 1 and "give one context" in result.output
