"""Hybrid scoring in SQL: every rule asserted exactly on a hand-made world (tests/scoring_world.py)."""

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


def ext_of(ids):
    back = {v: k for k, v in ids.items()}
    return lambda item_id: back[item_id]


def placement(conn, **columns):
    """Reshape the test placement 't' (changing the row changes the next request)."""
    for column, value in columns.items():
        if isinstance(value, dict):
            value = Jsonb(value)
        conn.execute(
            psycopg.sql.SQL("update pgrecs.placements set {} = %s where placement = 't'").format(
                psycopg.sql.Identifier(column)),
            (value,),
        )


def for_item(conn, item_id, k=10, place="t", filters=None, explain=False):
    return conn.execute(
        "select external_id, score, rank, contributions, reasons from recs.recommend_for_item("
        "item => %s, k => %s, placement => %s, filters => %s, explain => %s)",
        (item_id, k, place, Jsonb(filters or {}), explain),
    ).fetchall()


def names(rows):
    return [r[0] for r in rows]


def rule(conn, kind, name, *, item=None, brand=None, category=None, factor=None, position=None,
         starts=None, ends=None, place=None):
    conn.execute(
        "insert into pgrecs.business_rules (kind, name, item_id, brand, category, factor, position,"
        " starts_at, ends_at, placement)"
        " values (%s, %s, %s, %s, %s, %s, %s, now() + %s::interval, now() + %s::interval, %s)",
        (kind, name, item, brand, category, factor, position, starts, ends, place),
    )


def test_semantic_only_exact_scores_and_filters(conn, ids):
    rows = for_item(conn, ids["A"])
    # I is inactive, H out of stock; A itself never comes back
    assert names(rows) == ["B", "C", "N", "E"]
    assert [r[2] for r in rows] == [1, 2, 3, 4]
    assert [r[1] for r in rows] == pytest.approx([1.0, 0.8 / 0.9, 0.7 / 0.9, 0.5 / 0.9], rel=1e-5)
    assert rows[0][3] == {"semantic": pytest.approx(1.0)}


def test_in_stock_off_and_price_and_category_filters(conn, ids):
    placement(conn, default_filters={})
    assert names(for_item(conn, ids["A"])) == ["B", "H", "C", "N", "E"]  # H back, I (inactive) never
    assert names(for_item(conn, ids["A"], filters={"price_max": 90})) == ["B", "C", "E"]
    assert names(for_item(conn, ids["A"], filters={"category": "Shoes > Trail"})) == ["E"]
    assert names(for_item(conn, ids["A"], filters={"brands": ["Bolt"]})) == ["C", "N"]
    assert names(for_item(conn, ids["A"], filters={"exclude": [ids["B"]]})) == ["H", "C", "N", "E"]


def test_zero_weight_switches_a_signal_off(conn, ids):
    placement(conn, weights={"semantic": 1, "cooccurrence": 0, "ease": 0})
    assert not {"F", "J", "G"} & set(names(for_item(conn, ids["A"])))
    placement(conn, weights={"semantic": 0, "cooccurrence": 1, "ease": 0})
    rows = for_item(conn, ids["A"])
    assert names(rows) == ["F", "C", "J"]
    assert all(set(r[3]) == {"cooccurrence"} for r in rows)
    placement(conn, weights={"semantic": 0, "cooccurrence": 0, "ease": 1})
    assert names(for_item(conn, ids["A"])) == ["G", "B"]


def test_weighted_fusion_exact(conn, ids):
    placement(conn, weights={"semantic": 1, "cooccurrence": 0.5})
    rows = {r[0]: r for r in for_item(conn, ids["A"])}
    assert rows["C"][1] == pytest.approx(0.8 / 0.9 + 0.5 * 0.4 / 0.6, rel=1e-5)
    assert rows["C"][3] == {"semantic": pytest.approx(0.8 / 0.9, rel=1e-5),
                            "cooccurrence": pytest.approx(0.5 * 0.4 / 0.6, rel=1e-5)}
    assert rows["F"][1] == pytest.approx(0.5, rel=1e-5)


def test_rrf_fusion_exact(conn, ids):
    placement(conn, weights={"semantic": 1, "cooccurrence": 1}, fusion="rrf", rrf_k=60)
    rows = {r[0]: r for r in for_item(conn, ids["A"])}
    # ranks are over the filtered candidates: semantic B1 C2 N3 E4, cooccurrence F1 C2 J3
    assert rows["C"][1] == pytest.approx(2 / 62, rel=1e-5)
    assert rows["B"][1] == pytest.approx(1 / 61, rel=1e-5)
    assert names(for_item(conn, ids["A"]))[0] == "C"


def test_blocked_item_never_appears(conn, ids):
    rule(conn, "block", "recall", item=ids["B"])
    assert "B" not in names(for_item(conn, ids["A"]))
    rule(conn, "block", "no bolt", brand="Bolt")
    assert names(for_item(conn, ids["A"])) == ["E"]
    # a pin cannot bring a blocked item back
    rule(conn, "pin", "pin blocked", item=ids["B"], position=1)
    assert names(for_item(conn, ids["A"])) == ["E"]


def test_block_outside_its_window_does_nothing(conn, ids):
    rule(conn, "block", "later", item=ids["B"], starts="1 day", ends="2 days")
    rule(conn, "block", "other placement", item=ids["C"], place="pdp_similar")
    assert names(for_item(conn, ids["A"]))[:2] == ["B", "C"]


def test_pins_land_at_their_position(conn, ids):
    rule(conn, "pin", "house brand", item=ids["G"], position=2)
    rows = for_item(conn, ids["A"])
    assert names(rows) == ["B", "G", "C", "N", "E"]
    assert rows[1][2] == 2
    assert "pinned at position 2: house brand" in rows[1][4]
    # an item already in the list moves to its pinned slot instead of appearing twice
    rule(conn, "pin", "first", item=ids["E"], position=1)
    assert names(for_item(conn, ids["A"])) == ["E", "G", "B", "C", "N"]
    # pins beyond k are not shown; k cuts the list
    assert names(for_item(conn, ids["A"], k=1)) == ["E"]


def test_pin_of_inactive_or_filtered_item_is_skipped(conn, ids):
    rule(conn, "pin", "inactive", item=ids["I"], position=1)
    rule(conn, "pin", "out of stock", item=ids["H"], position=1)
    assert names(for_item(conn, ids["A"]))[0] == "B"


def test_caps_per_brand_and_category(conn, ids):
    placement(conn, weights={"semantic": 1, "cooccurrence": 1, "ease": 1}, max_per_brand=1)
    rows = for_item(conn, ids["A"], k=3)
    brands = [world.ITEMS[n][1] for n in names(rows)]
    assert len(brands) == len(set(brands)) == 3  # Acme, Bolt, Cusp once each
    placement(conn, max_per_brand=None, max_per_category=1, category_level=2)
    cats = [world.ITEMS[n][2][1] for n in names(for_item(conn, ids["A"], k=4))]
    assert len(cats) == len(set(cats)) == 4  # Running, Trail, Socks, Shirts once each


def test_caps_fill_the_list_to_k_from_the_rest_of_the_pool(conn, ids):
    # 7 eligible candidates (B C N E from semantic, F J from cooccurrence, G from ease), 3 brands
    placement(conn, weights={"semantic": 1, "cooccurrence": 1, "ease": 1}, max_per_brand=1)
    capped = names(for_item(conn, ids["A"], k=3))
    placement(conn, max_per_brand=None)
    uncapped = names(for_item(conn, ids["A"], k=10))
    assert len(uncapped) == 7
    placement(conn, max_per_brand=1)
    rows = names(for_item(conn, ids["A"], k=10))
    # k eligible items exist up to 7: the list is never cut short by the caps
    assert len(rows) == 7 and set(rows) == set(uncapped)
    # the caps still decide the head of the list; the capped items follow in relevance order
    assert rows[:3] == capped
    assert rows[3:] == [n for n in uncapped if n not in capped]
    assert len(names(for_item(conn, ids["A"], k=5))) == 5


def test_campaign_boost_only_inside_its_window(conn, ids):
    rule(conn, "boost", "Spring", item=ids["E"], factor=10, starts="-1 day", ends="1 day")
    rows = for_item(conn, ids["A"])
    assert names(rows)[0] == "E"
    assert rows[0][1] == pytest.approx(10 * 0.5 / 0.9, rel=1e-5)
    assert "boosted: campaign Spring" in rows[0][4]
    conn.execute("update pgrecs.business_rules set starts_at = now() - interval '2 days', ends_at = now() - interval '1 day'")
    assert names(for_item(conn, ids["A"]))[0] == "B"
    conn.execute("update pgrecs.business_rules set starts_at = now() + interval '1 day', ends_at = now() + interval '2 days'")
    rows = for_item(conn, ids["A"])
    assert names(rows)[-1] == "E" and not any("Spring" in reason for r in rows for reason in r[4])


def test_brand_boost_and_demotion(conn, ids):
    rule(conn, "boost", "Bolt week", brand="Bolt", factor=2)
    assert names(for_item(conn, ids["A"]))[:2] == ["C", "N"]
    conn.execute("delete from pgrecs.business_rules")
    rule(conn, "boost", "slow sellers", brand="Acme", factor=0.1)
    rows = for_item(conn, ids["A"])
    assert names(rows) == ["C", "N", "B", "E"]
    assert "demoted: slow sellers" in rows[2][4]


def test_mmr_changes_the_list_when_lambda_changes(conn, ids):
    assert names(for_item(conn, ids["A"])) == ["B", "C", "N", "E"]
    placement(conn, mmr_lambda=0.5)
    # C is almost B (cosine 0.99): diversity pushes it to the end
    rows = for_item(conn, ids["A"], explain=True)
    assert names(rows) == ["B", "N", "E", "C"]
    assert rows[3][3]["_mmr"]["relevance_rank"] == 2
    placement(conn, mmr_lambda=1.0)
    assert names(for_item(conn, ids["A"])) == ["B", "C", "N", "E"]


def test_poor_quality_items_are_down_weighted_in_semantic(conn, ids):
    conn.execute("update pgrecs.item_signals set quality_score = 0.1 where item_id = %s", (ids["B"],))
    rows = {r[0]: r[1] for r in for_item(conn, ids["A"])}
    # B: 0.9 * 0.5 = 0.45, now below C (0.8, the new maximum)
    assert rows["C"] == pytest.approx(1.0)
    assert rows["B"] == pytest.approx(0.45 / 0.8, rel=1e-5)


def test_explanations_name_real_anchors(conn, ids):
    placement(conn, weights={"semantic": 1, "cooccurrence": 1})
    rows = {r[0]: r for r in for_item(conn, ids["A"], explain=True)}
    c = rows["C"]
    # C: semantic 0.8/0.9 (share 0.57) before co-occurrence 0.4/0.6 (share 0.43); both material
    assert c[4] == ["similar description, same category (Shoes > Running)", "often bought together with this item"]
    assert c[3]["semantic"]["anchor_external_id"] == "A"
    assert c[3]["semantic"]["raw"] == pytest.approx(0.8, rel=1e-5)
    assert c[3]["semantic"]["share"] == pytest.approx((0.8 / 0.9) / (0.8 / 0.9 + 0.4 / 0.6), rel=1e-5)
    assert c[3]["cooccurrence"]["weight"] == 1
    assert rows["B"][4] == ["similar description, same brand (Acme)"]
    assert rows["F"][4] == ["often bought together with this item"]


def test_a_reason_needs_a_fifth_of_the_score(conn, ids):
    # C's co-occurrence term is weight * 0.4/0.6 next to semantic 0.8/0.9
    placement(conn, weights={"semantic": 1, "cooccurrence": 0.1})
    c = {r[0]: r for r in for_item(conn, ids["A"])}["C"]
    assert c[3]["cooccurrence"] > 0  # it contributed, but 0.067 of 0.956 (7%) is not material
    assert c[4] == ["similar description, same category (Shoes > Running)"]
    placement(conn, weights={"semantic": 1, "cooccurrence": 0.5})  # 0.333 of 1.222: 27%
    c = {r[0]: r for r in for_item(conn, ids["A"])}["C"]
    assert c[4] == ["similar description, same category (Shoes > Running)", "often bought together with this item"]


def test_at_most_three_reasons_pin_first(conn, ids):
    placement(conn, weights={"semantic": 1, "ease": 1})
    rule(conn, "pin", "hero", item=ids["B"], position=1)
    rule(conn, "boost", "Acme days", brand="Acme", factor=1.5)
    b = for_item(conn, ids["A"])[0]
    assert b[0] == "B"
    # four candidates (pin, semantic 1.0, EASE 0.4 = 29% of the score, the boost): the first three
    assert b[4] == ["pinned at position 1: hero", "similar description, same brand (Acme)",
                    "customers who chose this item also chose this one"]
    placement(conn, weights={"semantic": 1, "ease": 0})
    assert for_item(conn, ids["A"])[0][4] == ["pinned at position 1: hero", "similar description, same brand (Acme)",
                                              "boosted: campaign Acme days"]


def test_popular_right_now_only_for_popular_items(conn, ids):
    """'popular right now' needs popularity to matter for the item and the item in the top 5%."""
    placement(conn, weights={"semantic": 1, "popularity": 0.1}, pool_sizes={"popularity": 3})
    rows = {r[0]: r for r in for_item(conn, ids["A"])}
    assert rows["P"][4] == ["popular right now"]  # the most popular item (percentile 0)
    assert rows["F"][3]["popularity"] > 0 and rows["F"][4] == []  # second of 12: top 8.3%, not 5%
    # B is carried by semantics; popularity adds 0.01 of 1.01: no popularity reason even at the top
    conn.execute("update pgrecs.item_signals set popularity_percentile = 0 where item_id = %s", (ids["B"],))
    assert {r[0]: r for r in for_item(conn, ids["A"])}["B"][4] == ["similar description, same brand (Acme)"]
    conn.execute("update pgrecs.item_signals set popularity_percentile = 0.5 where item_id = %s", (ids["P"],))
    assert {r[0]: r for r in for_item(conn, ids["A"])}["P"][4] == []


def test_reason_wording_tells_the_signals_apart(conn, ids):
    conn.execute("insert into pgrecs.item_neighbors (signal, item_id, neighbor_item_id, score, rank)"
                 " values ('sequence', %s, %s, 0.4, 1)", (ids["A"], ids["D"]))
    placement(conn, weights={"semantic": 1, "cooccurrence": 1, "ease": 1, "sequence": 1})
    uid = world.add_user(conn, "u-words")
    world.add_event(conn, uid, ids["A"], "view")
    words = {
        "page": {r[0]: r[4] for r in for_item(conn, ids["A"])},
        "history": dict(conn.execute("select external_id, reasons from recs.recommend_for_user(user_id => %s,"
                                     " placement => 't')", (uid,)).fetchall()),
        "example": dict(conn.execute("select external_id, reasons from recs.recommend(%s, placement => 't')",
                                     ([ids["A"]],)).fetchall()),
    }
    assert words["page"]["F"] == ["often bought together with this item"]
    assert words["page"]["G"] == ["customers who chose this item also chose this one"]
    assert words["page"]["D"] == ["often chosen next after this item"]
    assert words["history"]["F"] == ['often bought together with "Alpha runner" you viewed']
    assert words["history"]["G"] == ["customers like you also chose this"]
    assert words["history"]["D"] == ['often chosen next after "Alpha runner" you viewed']
    assert words["history"]["E"] == ['similar to "Alpha runner" you viewed']
    assert words["example"]["G"] == ['customers who chose "Alpha runner" (your example) also chose this']
    assert words["example"]["F"] == ['often bought together with "Alpha runner" (your example)']


def test_product_page_never_similar_to_itself(conn, ids):
    placement(conn, weights={"semantic": 1, "cooccurrence": 1, "ease": 1, "popularity": 0.2})
    for anchor in ("A", "D", "N", "F"):
        rows = for_item(conn, ids[anchor])
        title = world.ITEMS[anchor][0]
        reasons = [reason for r in rows for reason in r[4]]
        assert reasons, anchor
        assert not [reason for reason in reasons if "similar to" in reason or title in reason], anchor


def test_sequence_signal_exact_and_explained(conn, ids):
    """Next-item lists ('sequence'): normalised like every neighbour signal, explained by the anchor."""
    for rank, (nb, score) in enumerate([("E", 0.4), ("F", 0.1)], start=1):
        conn.execute("insert into pgrecs.item_neighbors (signal, item_id, neighbor_item_id, score, rank)"
                     " values ('sequence', %s, %s, %s, %s)", (ids["A"], ids[nb], score, rank))
    placement(conn, weights={"sequence": 1, "semantic": 0.5})
    rows = {r[0]: r for r in for_item(conn, ids["A"], explain=True)}
    assert rows["E"][1] == pytest.approx(1.0 + 0.5 * 0.5 / 0.9, rel=1e-5)
    assert rows["F"][1] == pytest.approx(0.25, rel=1e-5)
    assert rows["E"][3]["sequence"]["anchor_external_id"] == "A"
    assert rows["E"][3]["sequence"]["raw"] == pytest.approx(0.4, rel=1e-5)
    assert rows["F"][4][0] == "often chosen next after this item"
    placement(conn, weights={"sequence": 0, "semantic": 1})
    assert "F" not in {r[0] for r in for_item(conn, ids["A"])}


def test_sequence_reads_the_history_most_recent_first(conn, ids):
    """The next-item signal weighs a user's anchors by recency position (1, 1/2, ...), not by their
    history weight: A was bought (the heavier event) before D was viewed, yet D's next item leads."""
    for anchor, nb in (("A", "E"), ("D", "C")):
        conn.execute("insert into pgrecs.item_neighbors (signal, item_id, neighbor_item_id, score, rank)"
                     " values ('sequence', %s, %s, 0.4, 1)", (ids[anchor], ids[nb]))
    placement(conn, weights={"sequence": 1})
    uid = world.add_user(conn, "u-seq")
    world.add_event(conn, uid, ids["A"], "purchase", "2 hours")
    world.add_event(conn, uid, ids["D"], "view", "1 hour")
    world.add_event(conn, uid, ids["A"], "impression", "30 minutes")  # shown, not a step: A stays second
    history = conn.execute("select item_id from pgrecs.user_history(%s, 't')", (uid,)).fetchall()
    assert [r[0] for r in history] == [ids["D"], ids["A"]]  # most recent first
    rows = conn.execute(
        "select external_id, score, reasons from recs.recommend_for_user(user_id => %s, placement => 't')", (uid,)
    ).fetchall()
    assert [(r[0], round(r[1], 6)) for r in rows] == [("C", 1.0), ("E", 0.5)]
    assert rows[0][2][0] == 'often chosen next after "Delta trail" you viewed'


def test_items_of_one_timestamp_share_a_recency_position(conn, ids):
    """A basket (A and D at one instant) after C: A and D are both the most recent step, so their
    next items weigh alike (1 each) and C's half; the rows' load order plays no part."""
    for anchor, nb in (("A", "E"), ("D", "B"), ("C", "F")):
        conn.execute("insert into pgrecs.item_neighbors (signal, item_id, neighbor_item_id, score, rank)"
                     " values ('sequence', %s, %s, 0.4, 1)", (ids[anchor], ids[nb]))
    placement(conn, weights={"sequence": 1})
    results = []
    for user, basket in (("u-basket-1", ("A", "D")), ("u-basket-2", ("D", "A"))):
        uid = world.add_user(conn, user)
        world.add_event(conn, uid, ids["C"], "view", "2 hours")
        conn.execute("insert into pgrecs.events (user_id, item_id, event_type, occurred_at, dedup_key)"
                     " select %s, unnest(%s::bigint[]), 'purchase', date_trunc('minute', now()) - interval '1 hour',"
                     " gen_random_uuid()", (uid, [ids[b] for b in basket]))
        history = conn.execute("select item_id, recency_position from pgrecs.user_history(%s, 't')",
                               (uid,)).fetchall()
        assert sorted(history) == sorted([(ids["A"], 1), (ids["D"], 1), (ids["C"], 2)])
        results.append(conn.execute(
            "select external_id, round(score::numeric, 6) from recs.recommend_for_user(user_id => %s, placement => 't')",
            (uid,)).fetchall())
    assert results[0] == results[1]
    assert dict(results[0]) == {"E": 1, "B": 1, "F": 0.5}
    # equal scores are ordered by the tie key (a hash of the external id), not by item id
    keys = dict(conn.execute("select external_id, tie_key from pgrecs.items where external_id in ('E', 'B')"))
    assert [r[0] for r in results[0][:2]] == sorted(("E", "B"), key=keys.get)


def test_cold_start_item_via_semantics(conn, ids):
    # N has no events and no item_signals row: reachable through A's semantic list, and has its own
    assert "N" in names(for_item(conn, ids["A"]))
    assert names(for_item(conn, ids["N"])) == ["A", "C"]


def test_user_history_exclusions_and_reasons(conn, ids):
    placement(conn, weights={"semantic": 1, "cooccurrence": 1})
    uid = world.add_user(conn, "u1")
    world.add_event(conn, uid, ids["A"], "view")
    world.add_event(conn, uid, ids["C"], "purchase", "2 days")
    rows = conn.execute(
        "select external_id, reasons from recs.recommend_for_user(user_id => %s, placement => 't')", (uid,)
    ).fetchall()
    got = dict(rows)
    assert "C" not in got  # purchased
    assert got["B"][0] == 'similar to "Alpha runner" you viewed'
    assert 'often bought together with "Alpha runner" you viewed' in got["F"]
    placement(conn, allow_repeats=True)
    assert "C" in names(conn.execute(
        "select external_id from recs.recommend_for_user(%s::bigint, placement => 't')", (uid,)).fetchall())


def test_several_interests_not_one_centroid(conn, ids):
    uid = world.add_user(conn, "u2")
    world.add_event(conn, uid, ids["A"], "view", "1 hour")
    world.add_event(conn, uid, ids["F"], "view", "2 hours")
    got = names(conn.execute(
        "select external_id from recs.recommend_for_user(%s::bigint, placement => 't')", (uid,)).fetchall())
    assert "B" in got and "J" in got  # J comes only from F's list, B only from A's


def test_new_user_gets_popularity_and_next_request_sees_event(conn, ids):
    placement(conn, weights={"semantic": 1, "popularity": 0.1}, pool_sizes={"popularity": 3})
    uid = world.add_user(conn, "u3")
    rows = conn.execute(
        "select external_id, reasons from recs.recommend_for_user('u3', placement => 't')").fetchall()
    assert names(rows) == ["P", "F", "A"]
    assert rows[0][1] == ["new visitor: popular with everyone", "popular right now"]
    world.add_event(conn, uid, ids["A"], "view", "1 minute")
    rows = conn.execute(
        "select external_id, reasons from recs.recommend_for_user('u3', placement => 't')").fetchall()
    assert names(rows)[0] == "B"
    assert rows[0][1][0] == 'similar to "Alpha runner" you viewed'


def test_user_with_years_old_history_is_still_personalised(conn, ids):
    # history decay is relative to the user's latest event, not to now(): events from three years
    # ago keep their weights and order instead of decaying to nothing (and to popularity only)
    placement(conn, weights={"semantic": 1, "popularity": 0.1}, pool_sizes={"popularity": 3})
    uid = world.add_user(conn, "u_old")
    world.add_event(conn, uid, ids["A"], "view", "1100 days")
    world.add_event(conn, uid, ids["F"], "view", "1130 days")
    history = conn.execute(
        "select item_id, weight from pgrecs.user_history(%s, 't')", (uid,)).fetchall()
    assert [h[0] for h in history] == [ids["A"], ids["F"]]
    assert history[0][1] == pytest.approx(1.0, rel=1e-3)  # the latest event is not decayed
    rows = conn.execute(
        "select external_id, reasons from recs.recommend_for_user(%s::bigint, placement => 't')", (uid,)
    ).fetchall()
    assert names(rows)[0] == "B"
    assert rows[0][1][0] == 'similar to "Alpha runner" you viewed'
    assert "J" in names(rows)  # F's neighbour: the older interest still counts


def test_new_user_with_category_context(conn, ids):
    placement(conn, weights={"popularity": 1})
    world.add_user(conn, "u4")
    rows = conn.execute(
        "select external_id, reasons from recs.recommend_for_user('u4', placement => 't', filters => '{\"category\": \"Shoes\"}')"
    ).fetchall()
    assert names(rows) == ["A", "B", "C", "E", "D"]
    assert all(r[1][0] == "new visitor: popular in Shoes" for r in rows)


def test_unknown_user_is_a_new_visitor(conn, ids):
    # an id never seen (by external id or internal id) gets the same cold-start list as a known
    # user without history, and nothing is written
    placement(conn, weights={"semantic": 1, "popularity": 0.1}, pool_sizes={"popularity": 3})
    world.add_user(conn, "known-but-quiet")
    users_before = conn.execute("select count(*) from pgrecs.users").fetchone()[0]
    calls = ["select external_id, score, reasons from recs.recommend_for_user('known-but-quiet', placement => 't')",
             "select external_id, score, reasons from recs.recommend_for_user('never-seen', placement => 't')",
             "select external_id, score, reasons from recs.recommend_for_user(123456::bigint, placement => 't')"]
    lists = [conn.execute(call).fetchall() for call in calls]
    assert names(lists[0]) == ["P", "F", "A"]
    assert lists[1] == lists[0] and lists[2] == lists[0]
    assert [r[2][0] for r in lists[1]] == ["new visitor: popular with everyone"] * 3
    assert conn.execute("select count(*) from pgrecs.users").fetchone()[0] == users_before
    # a user with history gets no cold-start reason
    uid = world.add_user(conn, "u-hist")
    world.add_event(conn, uid, ids["A"], "view", "1 minute")
    rows = conn.execute("select reasons from recs.recommend_for_user('u-hist', placement => 't')").fetchall()
    assert rows and not any(reason.startswith("new visitor") for r in rows for reason in r[0])


def test_more_like_these_less_like_those(conn, ids):
    rows = conn.execute(
        "select external_id, score from recs.recommend(%s, %s, placement => 't')",
        ([ids["A"]], [ids["D"]]),
    ).fetchall()
    got = dict(rows)
    assert "D" not in got and "A" not in got
    # C: 0.8 - 0.9 = -0.1; E: 0.5 - 0.6 = -0.1; both fall below N (0.7)
    assert names(rows)[:2] == ["B", "N"]
    assert got["C"] == pytest.approx(-0.1 / 0.9, abs=1e-4)


def test_errors(conn, ids):
    with pytest.raises(psycopg.errors.NoDataFound, match="unknown placement"):
        for_item(conn, ids["A"], place="nope")
    conn.rollback()
    with pytest.raises(psycopg.errors.NoDataFound, match="unknown item"):
        conn.execute("select * from recs.recommend_for_item('no-such-sku')")
    conn.rollback()
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown filter: colour"):
        for_item(conn, ids["A"], filters={"colour": "red"})
    conn.rollback()
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="k must be"):
        for_item(conn, ids["A"], k=0)
    conn.rollback()
    with pytest.raises(psycopg.errors.NoDataFound, match="unknown placement"):
        conn.execute("select * from recs.recommend_for_user('never-seen', placement => 'nope')")


def test_seeded_placements_work_on_the_world(conn, ids):
    uid = world.add_user(conn, "u5")
    world.add_event(conn, uid, ids["A"], "add_to_cart")
    for sql, arg in [
        ("select external_id from recs.recommend_for_item(%s::bigint, placement => 'pdp_similar')", ids["A"]),
        ("select external_id from recs.recommend_for_user(%s::bigint, placement => 'home_for_you')", uid),
        ("select external_id from recs.recommend(array[%s::bigint], placement => 'cart_complete_the_look')", ids["A"]),
        ("select external_id from recs.recommend(array[%s::bigint])", ids["A"]),
    ]:
        got = names(conn.execute(sql, (arg,)).fetchall())
        assert got and "A" not in got and "I" not in got and "H" not in got


def test_functions_are_stable_commented_and_read_only(conn):
    rows = conn.execute(
        "select p.proname, p.provolatile, p.proparallel, obj_description(p.oid, 'pg_proc')"
        " from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname = 'recs' and p.proname like 'recommend%'"
    ).fetchall()
    assert len(rows) == 6  # item and user by id and by external id, examples by ids and by external ids
    for name, volatility, parallel, comment in rows:
        assert volatility == "s", name
        assert parallel == "s", name
        assert comment, name


@pytest.mark.parametrize("filters", [
    {}, {"in_stock": True}, {"in_stock": False}, {"price_min": 10}, {"price_max": 20.5},
    {"price_min": 5, "price_max": 30, "in_stock": True}, {"category": "Shoes > Running"}, {"category": ["Shoes"]}, {"brand": "Acme"},
    {"brands": ["Acme", "Zed"]}, {"exclude_brands": ["Acme"]}, {"in_stock": None, "category": None},
])
def test_item_passes_agrees_with_item_matches_filters(conn, ids, filters):
    # rank_items tests the filters as scalars (pgrecs.item_passes); it must accept exactly the items
    # pgrecs.item_matches_filters accepts, on every item of the world
    first = min(ids.values())
    filters = {**filters, "exclude": [first]} if filters.get("brand") else filters
    rows = conn.execute(
        """
        select i.item_id, pgrecs.item_matches_filters(i, f),
               pgrecs.item_passes(i, coalesce(f.in_stock, false), f.price_min, f.price_max, f.category, f.brand,
                                  f.brands, f.exclude_brands, f.exclude)
        from pgrecs.items i, (select (pgrecs.parse_filters(%s)).*) f
        """,
        (Jsonb(filters),),
    ).fetchall()
    assert len(rows) >= 5
    assert [(r[0], r[1]) for r in rows] == [(r[0], r[2]) for r in rows]
    if filters.get("brand") or filters.get("price_min") or filters.get("category"):
        assert not all(r[1] for r in rows)  # the filter does reject something in this world
