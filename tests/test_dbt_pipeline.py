"""dbt build on a hand-made dirty catalog: exact cleaned text, audit scores, co-occurrence, incremental.

One module-scoped database; `pgrecs refresh` (dbt build + EASE + publish) runs once for the
assertions on the built marts, and twice more in the incremental test.
"""

from __future__ import annotations

import math

import psycopg
import pytest

from conftest import TEMPLATE, create_database, drop_database
from pgrecs.signals.ease_fit import EaseSettings

pytestmark = pytest.mark.slow  # runs dbt

ITEMS = [
    # external_id, title, description, brand, category_path, price, image_url
    ("a1", "<b>Caf&eacute; Mug 12 oz</b>", "<p>A sturdy mug for your coffee &amp; tea.</p>", "ACME KITCHEN",
     ["Kitchen &amp; Dining", "Mugs"], 9.5, "http://img/a1.jpg"),
    ("a2", "donâ€™t panic towel", "CafÃ© quality towel, very soft and absorbent for every day use in the kitchen.",
     "acme kitchen", ["Kitchen & Dining", "MUGS"], 4, None),
    ("a3", "Blue Widget", "", None, [], None, None),
    ("a4", "Blue  Widget!", "Product Description: Great widget. Click here to buy now! See more", "Widgets Inc",
     ["Tools"], 1, "http://img/a4.jpg"),
    ("a5", "12345 #### 999", None, None, [], None, None),
    ("a6", "Red Widget Deluxe Edition for the Kitchen", "Shared text for many items in the store.", None, [], 2, None),
    ("a7", "Red Widget Deluxe Edition for the Kitchens", "Shared text for many items in the store.", None, [], 2, None),
    ("a8", "Green Gadget", "Shared text for many items in the store.", None, [], 2, None),
]

# user, item, event type; all at the same instant, so ages are 0 and popularity = summed weight
EVENTS = [
    ("u1", "a1", "view"), ("u1", "a2", "view"),
    ("u2", "a1", "view"), ("u2", "a2", "view"), ("u2", "a3", "purchase"),
    ("u3", "a1", "view"),
    ("u5", "a4", "view"), ("u5", "a5", "view"),
]
LATER_EVENTS = [("u3", "a2", "view", None), ("u4", "a6", "view", "s1"), ("u4", "a7", "add_to_cart", "s1")]


def insert_events(conn, events, at="2024-01-01 12:00+00"):
    for event in events:
        user, item, event_type = event[:3]
        session = event[3] if len(event) > 3 else None
        conn.execute(
            "insert into pgrecs.users (external_id) values (%s) on conflict do nothing", (user,))
        conn.execute(
            """
            insert into pgrecs.events (user_id, item_id, event_type, occurred_at, session_id, dedup_key)
            select u.user_id, i.item_id, %s, %s, %s, gen_random_uuid()
            from pgrecs.users u, pgrecs.items i where u.external_id = %s and i.external_id = %s
            """, (event_type, at, session, user, item))


@pytest.fixture(scope="module")
def dirty_url(server_url, template_url):
    url = create_database(server_url, TEMPLATE)
    with psycopg.connect(url) as conn:
        for ext, title, desc, brand, cats, price, image in ITEMS:
            conn.execute(
                "insert into pgrecs.items (external_id, title, description, brand, category_path, price, image_url)"
                " values (%s, %s, %s, %s, %s, %s, %s)", (ext, title, desc, brand, cats, price, image))
        insert_events(conn, EVENTS)
    yield url
    drop_database(server_url, url)


@pytest.fixture(scope="module")
def built(dirty_url):
    from pgrecs.signals.refresh import refresh

    return refresh(dirty_url, top_n=50)


def query(url, sql, *params):
    with psycopg.connect(url) as conn:
        cur = conn.execute(sql, params)
        names = [c.name for c in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def by_external(url, sql):
    return {row["external_id"]: row for row in query(url, sql)}


def test_build_runs_models_and_tests(built):
    assert built.mode == "full"
    assert built.models >= 15 and built.tests >= 60


def test_cleaned_items_exactly(dirty_url, built):
    rows = by_external(dirty_url, """
        select external_id, title, description, brand, brand_key, category_path, category_key,
            size_value, size_unit, title_raw
        from recs_staging.stg_pgrecs__items""")
    assert {k: (r["title"], r["description"], r["brand"], r["category_path"]) for k, r in rows.items()} == {
        "a1": ("Café Mug 12 oz", "A sturdy mug for your coffee & tea.", "Acme Kitchen", ["Kitchen & Dining", "Mugs"]),
        "a2": ("don\u2019t panic towel",
               "Café quality towel, very soft and absorbent for every day use in the kitchen.",
               "Acme Kitchen", ["Kitchen & Dining", "MUGS"]),
        "a3": ("Blue Widget", None, None, []),
        "a4": ("Blue Widget!", "Great widget.", "Widgets Inc", ["Tools"]),
        "a5": ("12345 #### 999", None, None, []),
        "a6": ("Red Widget Deluxe Edition for the Kitchen", "Shared text for many items in the store.", None, []),
        "a7": ("Red Widget Deluxe Edition for the Kitchens", "Shared text for many items in the store.", None, []),
        "a8": ("Green Gadget", "Shared text for many items in the store.", None, []),
    }
    assert rows["a1"]["title_raw"] == "<b>Caf&eacute; Mug 12 oz</b>"  # raw kept untouched
    assert (float(rows["a1"]["size_value"]), rows["a1"]["size_unit"]) == (12.0, "oz")
    assert rows["a1"]["brand_key"] == rows["a2"]["brand_key"] == "acme kitchen"
    assert rows["a1"]["category_key"] == rows["a2"]["category_key"] == "mugs"


def test_enrichment_uses_the_live_composition(dirty_url, built):
    rows = by_external(dirty_url, """
        select e.external_id, e.embedding_text, e.text_problem, e.embeddable,
            pgrecs.compose_item_text(i.title, i.description, i.brand, i.category_path, i.attributes) as live
        from recs_marts.dim_items_enriched e join pgrecs.items i using (item_id)""")
    assert all(r["embedding_text"] == r["live"] for r in rows.values())
    assert rows["a1"]["embedding_text"] == (
        "Café Mug 12 oz. Brand: Acme Kitchen. Category: Kitchen & Dining > Mugs. A sturdy mug for your coffee & tea.")
    # "Blue Widget" is short but meaningful: embedded; digits and symbols only are not
    assert {k: r["text_problem"] for k, r in rows.items() if not r["embeddable"]} == {"a5": "no words"}


def test_audit_scores_and_flags_exactly(dirty_url, built):
    rows = by_external(dirty_url, "select * from recs_marts.fct_item_audit")
    similarity = query(dirty_url, "select similarity('red widget deluxe edition for the kitchen', 'red widget deluxe edition for the kitchens') as s")[0]["s"]
    assert similarity >= 0.9  # so a6/a7 are near-duplicates at the default threshold
    expected = {
        # 0.35 title + 0.30 * len(desc)/300 + 0.10 brand + 0.10 category + 0.05 price + 0.10 image - 0.10 per problem
        "a1": (0.735, ["short_description"]),
        "a2": (0.677, ["no_image", "mojibake"]),  # description of 77 characters
        "a3": (0.250, ["no_description", "no_brand", "no_category", "no_price", "no_image", "duplicate_title"]),
        "a4": (0.513, ["short_description", "duplicate_title", "boilerplate"]),
        "a5": (0.150, ["no_description", "no_brand", "no_category", "no_price", "no_image", "mostly_non_letters",
                       "not_embeddable"]),
        "a6": (0.240, ["short_description", "no_brand", "no_category", "no_image", "near_duplicate_title", "repeated_description"]),
        "a7": (0.240, ["short_description", "no_brand", "no_category", "no_image", "near_duplicate_title", "repeated_description"]),
        "a8": (0.340, ["short_description", "no_brand", "no_category", "no_image", "repeated_description"]),
    }
    assert {k: (float(r["quality_score"]), r["quality_flags"]) for k, r in rows.items()} == expected
    assert rows["a3"]["same_title_items"] == 1 and rows["a8"]["same_description_items"] == 2


def test_audit_summary(dirty_url, built):
    (summary,) = query(dirty_url, "select * from recs_marts.fct_catalog_audit_summary")
    assert summary["items"] == 8
    assert summary["no_description"] == 2 and float(summary["share_no_description"]) == 0.25
    assert summary["duplicate_title_items"] == 2 and summary["duplicate_title_groups"] == 1
    assert summary["near_duplicate_title_items"] == 2
    assert summary["repeated_description"] == 3 and summary["mojibake"] == 1 and summary["not_embeddable"] == 1
    assert summary["brands"] == 2 and summary["brands_with_spelling_variants"] == 1


def test_cooccurrence_hand_computed(dirty_url, built):
    rows = query(dirty_url, """
        select i.external_id as item, n.external_id as neighbor, s.score, s.rank
        from pgrecs.item_neighbors s
        join pgrecs.items i on i.item_id = s.item_id join pgrecs.items n on n.item_id = s.neighbor_item_id
        where s.signal = 'cooccurrence' order by 1, 4""")
    got = {(r["item"], r["neighbor"]): (r["score"], r["rank"]) for r in rows}
    # baskets: u1 {a1, a2}, u2 {a1, a2, a3 (purchase)}, u3 {a1}, u5 {a4, a5}; view weight ln 2, purchase ln 9
    # cosine(a1, a2) = 2 ln2^2 / (sqrt(3) ln2 * sqrt(2) ln2); shrinkage support / (support + 10)
    cos_12, cos_13, cos_23, cos_45 = 2 / math.sqrt(6), 1 / math.sqrt(3), 1 / math.sqrt(2), 1.0
    expected = {
        ("a1", "a2"): (cos_12 * 2 / 12, 1), ("a1", "a3"): (cos_13 / 11, 2),
        ("a2", "a1"): (cos_12 * 2 / 12, 1), ("a2", "a3"): (cos_23 / 11, 2),
        ("a3", "a2"): (cos_23 / 11, 1), ("a3", "a1"): (cos_13 / 11, 2),
        ("a4", "a5"): (cos_45 / 11, 1), ("a5", "a4"): (cos_45 / 11, 1),
    }
    assert set(got) == set(expected)
    for key, (score, rank) in expected.items():
        assert got[key][1] == rank, key
        assert got[key][0] == pytest.approx(score, rel=1e-5), key


def _sequence_lists(url):
    return {(r["item"], r["neighbor"]): (r["score"], r["rank"]) for r in query(url, """
        select i.external_id as item, n.external_id as neighbor, s.score, s.rank
        from pgrecs.item_neighbors s
        join pgrecs.items i on i.item_id = s.item_id join pgrecs.items n on n.item_id = s.neighbor_item_id
        where s.signal = 'sequence'""")}


def test_sequence_hand_computed(dirty_url, built):
    """Every event is at one instant: each user has one tie group, and the order of rows inside a
    tie is no step, so there is no next-item list (the steps between groups are checked after the
    later events, in test_incremental_refresh_equals_full_refresh)."""
    got = _sequence_lists(dirty_url)
    assert got == {}
    assert built.tenants[0]["sequence_rows"] == 0
    # asked for on an incremental refresh (`pgrecs refresh --sequence`): rebuilt, the same lists
    from pgrecs.signals.refresh import refresh

    report = refresh(dirty_url, sequence=True, run_tests=False)
    assert report.mode == "incremental" and report.tenants[0]["sequence_rows"] == 0
    assert _sequence_lists(dirty_url) == got


def test_popularity_and_signals_published(dirty_url, built):
    rows = by_external(dirty_url, """
        select i.external_id, s.popularity, s.trending, s.category_popularity_rank, s.quality_score,
            s.popularity_percentile
        from pgrecs.item_signals s join pgrecs.items i using (item_id)""")
    assert len(rows) == 8
    assert {k: r["popularity"] for k, r in rows.items()} == {
        "a1": 3.0, "a2": 2.0, "a3": 8.0, "a4": 1.0, "a5": 1.0, "a6": 0.0, "a7": 0.0, "a8": 0.0}
    assert rows["a3"]["trending"] == 8.0  # all in the recent window, none before: (8 - 0) / sqrt(1)
    assert (rows["a1"]["category_popularity_rank"], rows["a2"]["category_popularity_rank"]) == (1, 2)
    assert rows["a3"]["category_popularity_rank"] is None
    assert rows["a1"]["quality_score"] == pytest.approx(0.735)
    # the share of the 8 items strictly more popular; ties share one
    assert {k: r["popularity_percentile"] for k, r in rows.items()} == {
        "a3": 0.0, "a1": 0.125, "a2": 0.25, "a4": 0.375, "a5": 0.375, "a6": 0.625, "a7": 0.625, "a8": 0.625}


def test_ease_published_for_the_small_catalog(dirty_url, built):
    rows = query(dirty_url, "select count(*) as n from pgrecs.item_neighbors where signal = 'ease'")
    assert rows[0]["n"] > 0


EVENT_LEVEL_TABLES = {
    "int_user_items_aggregated": "select * from recs_intermediate.int_user_items_aggregated order by 1, 2, 3",
    "int_session_items_aggregated": "select * from recs_intermediate.int_session_items_aggregated order by 1, 2, 3",
    "int_basket_items_weighted": "select * from recs_intermediate.int_basket_items_weighted order by 1, 3, 4",
    "int_item_events_daily": "select * from recs_intermediate.int_item_events_daily order by 1, 2, 3",
    "int_item_events_decayed": "select * from recs_intermediate.int_item_events_decayed order by 1, 2",
    "fct_item_popularity": "select * from recs_marts.fct_item_popularity order by 1, 2",
    "item_signals": "select item_id, popularity, trending, category_popularity_rank, popularity_percentile,"
                    " quality_score, quality_flags"
                    " from pgrecs.item_signals order by 1",
}
# a day later, and a week later with two events on the day the 7-day trending boundary falls in
# (as_of 2024-01-09 06:00: the boundary is 2024-01-02 06:00), one on each side of it
WEEK_LATER_EVENTS = [("u1", "a4", "view", "s9", "2024-01-02 03:00+00"), ("u2", "a4", "click", None, "2024-01-02 08:00+00"),
                     ("u5", "a1", "purchase", "s5", "2024-01-09 06:00+00")]
# merged into stored rows: a session that goes on after a refresh (u4's s1, pair (s1, a6) again), and
# late events older than their pair's last event (u3-a1 stored at 2024-01-01 12:00, (s5, a1) at
# 2024-01-09 06:00)
MERGED_EVENTS = [("u4", "a6", "click", "s1", "2024-01-09 05:30+00"), ("u4", "a8", "view", "s1", "2024-01-09 05:45+00"),
                 ("u3", "a1", "click", None, "2024-01-01 06:00+00"), ("u5", "a1", "view", "s5", "2024-01-09 05:00+00")]


def _rounded(rows):
    return [{k: round(v, 9) if isinstance(v, float) else v for k, v in r.items()} for r in rows]


def _node_names(report):
    return {n.name for n in report.nodes}


# fct_item_sequence by its definition, one numeric weight 1 / (|group| x |next group|) per step
# (var sequence_shrinkage 5, cooc_top_n 50): the mart must match it row for row
SEQUENCE_BY_STEP = """
    with tie_groups as (
        select tenant_id, user_id, occurred_at, array_agg(distinct item_id order by item_id) as items
        from recs_staging.stg_pgrecs__events where weight > 0
        group by tenant_id, user_id, occurred_at
    ), consecutive as (
        select tenant_id, items, lead(items) over (partition by tenant_id, user_id order by occurred_at) as next_items
        from tie_groups
    ), counted as (
        select c.tenant_id, a.item_id, b.item_id as neighbor_item_id,
            sum(1.0::numeric / (cardinality(c.items) * cardinality(c.next_items))) as steps
        from consecutive as c, unnest(c.items) as a (item_id), unnest(c.next_items) as b (item_id)
        where c.next_items is not null and a.item_id <> b.item_id
        group by 1, 2, 3
    ), scored as (
        select c.tenant_id, c.item_id, c.neighbor_item_id, c.steps::double precision as steps,
            (c.steps / (sum(c.steps) over w + 5.0))::double precision as score,
            row_number() over (w order by c.steps desc, i.tie_key) as rank
        from counted as c join recs_staging.stg_pgrecs__items as i on i.item_id = c.neighbor_item_id
        window w as (partition by c.tenant_id, c.item_id)
    )
    select tenant_id, item_id, neighbor_item_id, steps, score, rank from scored where rank <= 50"""


def test_incremental_refresh_equals_full_refresh(dirty_url, built):
    """Incremental refreshes (new events on the same day, then on later days across a trending
    window boundary) leave every event-level model, the published lists and the item signals
    exactly as a full refresh over the same events does."""
    from pgrecs.signals.refresh import refresh

    sql = """select item_id, neighbor_item_id, rank, score from pgrecs.item_neighbors
             where signal = 'cooccurrence' order by 1, 3"""
    with psycopg.connect(dirty_url) as conn:
        insert_events(conn, LATER_EVENTS, at="2024-01-01 13:00+00")
    sequence_before = _sequence_lists(dirty_url)
    report = refresh(dirty_url, run_tests=True)
    assert report.mode == "incremental"
    # u3's and u4's baskets (a1, a2, a6, a7) and a3, whose list holds a1 and a2; not a4 / a5
    assert report.tenants[0]["cooccurrence_lists"] == 5
    # the next-item lists are a global model: kept by incremental refreshes unless asked for
    assert report.tenants[0]["sequence_rows"] == 0 and _sequence_lists(dirty_url) == sequence_before
    assert any("next-item lists kept" in n for n in report.notes)
    assert "fct_item_audit" not in _node_names(report)  # no item changed
    with psycopg.connect(dirty_url) as conn:
        for user, item, kind, session, at in WEEK_LATER_EVENTS:
            insert_events(conn, [(user, item, kind, session)], at=at)
    report = refresh(dirty_url, run_tests=True)
    assert report.mode == "incremental" and report.tests > 0
    stored = {(r["user_id"], r["item_id"]): r for r in query(
        dirty_url, "select * from recs_intermediate.int_user_items_aggregated")}
    with psycopg.connect(dirty_url) as conn:
        for user, item, kind, session, at in MERGED_EVENTS:
            insert_events(conn, [(user, item, kind, session)], at=at)
    report = refresh(dirty_url, run_tests=True)
    assert report.mode == "incremental"
    merged = {(r["user_id"], r["item_id"]): r for r in query(
        dirty_url, "select * from recs_intermediate.int_user_items_aggregated")}
    u3_a1 = query(dirty_url, "select u.user_id, i.item_id from pgrecs.users u, pgrecs.items i"
                             " where u.external_id = 'u3' and i.external_id = 'a1'")[0]
    key = (u3_a1["user_id"], u3_a1["item_id"])
    # the late click (weight 2, 6 hours before the stored last event) was merged into the stored row
    assert merged[key]["interactions"] == stored[key]["interactions"] + 1
    assert merged[key]["last_at"] == stored[key]["last_at"] and merged[key]["first_at"] < stored[key]["first_at"]
    incremental = query(dirty_url, sql)
    incremental_tables = {name: query(dirty_url, q) for name, q in EVENT_LEVEL_TABLES.items()}
    report = refresh(dirty_url, full=True, ease=False, run_tests=False)
    assert "fct_item_audit" in _node_names(report)
    # a full refresh rebuilds the next-item lists, from each item of a tie group to each item of
    # the user's next later group, weighted 1 / (|group| x |next group|): u1 {a1, a2} -> {a4} and
    # u2 {a1, a2, a3} -> {a4}; u3 {a1} -> {a1} (a repeat, no step) -> {a2}; u4 {a6, a7} -> {a6}
    # -> {a8}; u5 {a4, a5} -> {a1} -> {a1}. Out of a1: a4 1/2 + 1/3, a2 1 (shrinkage 5).
    sequence = _sequence_lists(dirty_url)
    assert set(sequence) == {("a1", "a4"), ("a2", "a4"), ("a3", "a4"), ("a1", "a2"), ("a7", "a6"),
                             ("a6", "a8"), ("a4", "a1"), ("a5", "a1")}
    assert sequence[("a1", "a2")] == (pytest.approx(1 / (11 / 6 + 5), rel=1e-6), 1)
    assert sequence[("a1", "a4")] == (pytest.approx((5 / 6) / (11 / 6 + 5), rel=1e-6), 2)
    assert sequence[("a7", "a6")] == (pytest.approx(0.5 / 5.5, rel=1e-6), 1)
    # the mart equals the per-step definition exactly (one numeric weight per step, summed), rows
    # and values both ways
    assert query(dirty_url, f"select count(*) as n from (({SEQUENCE_BY_STEP}) except"
                            " (select * from recs_marts.fct_item_sequence)) as d")[0]["n"] == 0
    assert query(dirty_url, f"select count(*) as n from ((select * from recs_marts.fct_item_sequence)"
                            f" except ({SEQUENCE_BY_STEP})) as d")[0]["n"] == 0
    full = query(dirty_url, sql)
    for name, q in EVENT_LEVEL_TABLES.items():
        # the incremental models (only the new events' users and days rebuilt) match a rebuild
        assert _rounded(incremental_tables[name]) == _rounded(query(dirty_url, q)), name
    assert [(r["item_id"], r["neighbor_item_id"], r["rank"]) for r in incremental] == \
        [(r["item_id"], r["neighbor_item_id"], r["rank"]) for r in full]
    assert [r["score"] for r in incremental] == pytest.approx([r["score"] for r in full], rel=1e-6)
    popularity = {r["item_id"]: r for r in incremental_tables["int_item_events_decayed"]}
    a4 = query(dirty_url, "select item_id from pgrecs.items where external_id = 'a4'")[0]["item_id"]
    # a4: the click (weight 2) on the boundary day after the boundary is recent; the view on the
    # boundary day before it and the 2024-01-01 12:00 view (7.75 days old) are previous
    assert (popularity[a4]["recent_weight"], popularity[a4]["previous_weight"]) == (2.0, 2.0)


def test_popularity_from_daily_rollup_equals_the_event_formula(dirty_url, built):
    """Popularity summed from the daily rollup equals sum(weight * 0.5 ^ (age / half-life)) over
    the events themselves."""
    rows = query(dirty_url, """
        with ref as (select max(occurred_at) as as_of from pgrecs.events)
        select e.item_id, sum(t.default_weight * power(0.5, extract(epoch from ref.as_of - e.occurred_at)::float8 / 86400 / 14))
               as expected, max(d.popularity) as got
        from pgrecs.events e join pgrecs.event_types t using (event_type) cross join ref
        join recs_intermediate.int_item_events_decayed d using (item_id)
        group by e.item_id""")
    assert rows
    for r in rows:
        assert r["got"] == pytest.approx(r["expected"], rel=1e-12), r


def test_no_change_refresh_skips_item_models_and_ease(dirty_url, built):
    from pgrecs.signals.refresh import refresh

    refresh(dirty_url, ease=True, run_tests=False)  # EASE in step with the current events
    before = query(dirty_url, "select item_id, neighbor_item_id, score from pgrecs.item_neighbors"
                              " where signal = 'ease' order by 1, 2")
    report = refresh(dirty_url, ease=True)
    assert report.mode == "incremental"
    assert not _node_names(report) & {"stg_pgrecs__items", "dim_items_enriched", "fct_item_audit"}
    assert any("EASE kept where the user x item matrix is unchanged" in n for n in report.notes)
    assert report.tenants[0]["ease_rows"] == 0 and report.tenants[0]["cooccurrence_lists"] == 0
    assert query(dirty_url, "select item_id, neighbor_item_id, score from pgrecs.item_neighbors"
                            " where signal = 'ease' order by 1, 2") == before
    # an item changes: the item models run again and the audit sees the change
    with psycopg.connect(dirty_url) as conn:
        conn.execute("update pgrecs.items set brand = 'Brand New' where external_id = 'a8'")
    report = refresh(dirty_url, run_tests=False)
    assert report.mode == "incremental" and "fct_item_audit" in _node_names(report)
    flags = query(dirty_url, "select a.quality_flags from recs_marts.fct_item_audit a"
                             " join pgrecs.items i using (item_id) where i.external_id = 'a8'")[0]["quality_flags"]
    assert "no_brand" not in flags
    # a changed setting turns the next refresh into a full one
    report = refresh(dirty_url, run_tests=False, variables={"popularity_half_life_days": 7})
    assert report.mode == "full" and any("settings changed" in n for n in report.notes)
    report = refresh(dirty_url, run_tests=False, variables={"popularity_half_life_days": 7})
    assert report.mode == "incremental"
    refresh(dirty_url, run_tests=False)  # back to the default settings (a full refresh)


def test_python_cooccurrence_equals_the_dbt_mart(dirty_url, built):
    """The published lists (sparse product in app/signals/cooccurrence.py) equal the SQL reference
    model fct_item_cooccurrence built over the same baskets."""
    from pgrecs import dbt

    dbt.run(dirty_url, "run", select="int_item_basket_norms fct_item_cooccurrence", full_refresh=True,
            variables={"full_refresh": True})
    mart = query(dirty_url, "select item_id, neighbor_item_id, rank, score from recs_marts.fct_item_cooccurrence"
                            " order by 1, 3")
    published = query(dirty_url, "select item_id, neighbor_item_id, rank, score from pgrecs.item_neighbors"
                                 " where signal = 'cooccurrence' order by 1, 3")
    assert len(mart) >= 8
    assert [(r["item_id"], r["neighbor_item_id"], r["rank"]) for r in published] == \
        [(r["item_id"], r["neighbor_item_id"], r["rank"]) for r in mart]
    assert [r["score"] for r in published] == pytest.approx([r["score"] for r in mart], rel=1e-6)


def test_ease_reads_the_embeddings_as_side_information(dirty_url, built):
    """a9, new, has no event but the default model describes it exactly like a1: with side information
    (the default weight) EASE links the two, and a change of the embeddings makes EASE stale."""
    import hashlib

    import numpy as np

    from pgrecs.signals.refresh import refresh

    rng = np.random.default_rng(3)
    vectors = {ext: rng.normal(size=384) for ext in ("a1", "a2", "a4")}
    vectors["a9"] = vectors["a1"]

    def ease_pairs():
        return {(r["a"], r["b"]) for r in query(
            dirty_url, "select i.external_id as a, j.external_id as b from pgrecs.item_neighbors n"
                       " join pgrecs.items i on i.item_id = n.item_id join pgrecs.items j on j.item_id = n.neighbor_item_id"
                       " where n.signal = 'ease'")}

    assert ("a1", "a9") not in ease_pairs()
    with psycopg.connect(dirty_url) as conn:
        conn.execute("insert into pgrecs.items (external_id, title) values ('a9', 'Twin of the mug')")
        for ext, vec in vectors.items():
            conn.execute(
                "insert into pgrecs.item_embeddings (item_id, model_id, embedding, text_sha256)"
                " select i.item_id, m.model_id, %s::halfvec, %s from pgrecs.items i, pgrecs.embedding_models m"
                " where i.external_id = %s and m.is_default",
                ("[" + ",".join(f"{v:.4f}" for v in vec) + "]", hashlib.sha256(ext.encode()).digest(), ext))
    try:
        report = refresh(dirty_url, ease=True, run_tests=False)
        assert report.tenants[0]["ease_rows"] > 0  # the embeddings changed: EASE recomputed
        assert {("a1", "a9"), ("a9", "a1")} <= ease_pairs()
        report = refresh(dirty_url, ease=True, run_tests=False)
        assert report.tenants[0]["ease_rows"] == 0  # nothing changed: kept
        refresh(dirty_url, ease=True, run_tests=False, ease_settings=EaseSettings(semantic_weight=0.0))
        assert not {p for p in ease_pairs() if "a9" in p}  # plain EASE cannot know a9
    finally:
        with psycopg.connect(dirty_url) as conn:
            conn.execute("delete from pgrecs.item_embeddings")
            conn.execute("delete from pgrecs.items where external_id = 'a9'")


def run_cli(url, *args):
    from click.testing import CliRunner

    from pgrecs.cli import main

    return CliRunner().invoke(main, ["--db-url", url, *args], catch_exceptions=False)


def test_ease_above_the_dense_limit_is_fitted_by_blocks_on_its_own_schedule(dirty_url, built):
    """A tenant above --ease-max-items: a plain full refresh leaves its EASE lists as they are
    (with a note), `pgrecs refresh --cf` fits it by blocks (here one block: the dense lists
    exactly), publishes the lists and records the fit; `pgrecs models fits` lists it."""
    from pgrecs.signals.ease_fit import EaseSettings, compute_ease
    from pgrecs.signals.refresh import refresh

    def ease_rows():
        return sorted((r["item_id"], r["neighbor_item_id"], round(r["score"], 5)) for r in query(
            dirty_url, "select item_id, neighbor_item_id, score from pgrecs.item_neighbors where signal = 'ease'"))

    dense = compute_ease(dirty_url, EaseSettings(), [], tenants=["default"])["default"]
    assert len(dense.item_ids) > 0
    with psycopg.connect(dirty_url) as conn:
        conn.execute("delete from pgrecs.item_neighbors where signal = 'ease'")
    report = refresh(dirty_url, full=True, run_tests=False, ease_settings=EaseSettings(max_dense_items=2))
    assert any("fitted by blocks on its own schedule" in n and "refresh --cf" in n for n in report.notes)
    assert ease_rows() == []  # kept as they were (none), not silently dropped by a fit
    fits_before = query(dirty_url, "select count(*) as n from pgrecs.model_fits")[0]["n"]

    result = run_cli(dirty_url, "refresh", "--cf", "--ease-max-items", "2")
    assert result.exit_code == 0, result.output
    assert "EASE (blocks) for tenant default" in result.output
    expected = sorted((int(a), int(b), round(float(c), 5)) for a, b, c in zip(dense.item_ids, dense.neighbor_ids, dense.scores))
    got = ease_rows()
    assert [r[:2] for r in got] == [r[:2] for r in expected]
    assert [r[2] for r in got] == pytest.approx([r[2] for r in expected], rel=1e-3)
    fit = query(dirty_url, "select * from pgrecs.model_fits order by fit_id desc limit 1")[0]
    assert fit["method"] == "blocks" and fit["status"] == "published" and fit["signal"] == "ease"
    last_event = query(dirty_url, "select last_event_id from pgrecs.refresh_state where tenant_id = 'default'")[0]
    assert fit["last_event_id"] == last_event["last_event_id"]
    counts = query(dirty_url, "select count(distinct user_id) as users, count(*) as pairs"
                              " from recs_intermediate.int_user_items_aggregated")[0]
    assert (fit["users"], fit["interactions"], fit["neighbor_rows"]) == (counts["users"], counts["pairs"], len(dense.item_ids))
    assert fit["parameters"]["block_size"] == 1000 and fit["library_versions"]["pymetis"]
    assert fit["fit_seconds"] > 0 and fit["peak_rss_bytes"] > 0 and fit["estimated_bytes"] > 0
    assert query(dirty_url, "select count(*) as n from pgrecs.model_fits")[0]["n"] == fits_before + 1

    # nothing changed since: --cf keeps the lists and records no fit
    result = run_cli(dirty_url, "refresh", "--cf", "--ease-max-items", "2")
    assert result.exit_code == 0 and "unchanged since it was fitted" in result.output
    listed = run_cli(dirty_url, "models", "fits")
    assert listed.exit_code == 0 and f"{fit['fit_id']}\t" in listed.output and "\tblocks\tpublished\t" in listed.output


def test_memory_guard_refuses_a_fit_that_would_not_fit(dirty_url, built):
    """The estimate is checked before anything is allocated: one error line, exit 1, the
    published lists untouched, the refusal recorded."""
    before = query(dirty_url, "select count(*) as n, sum(score) as s from pgrecs.item_neighbors where signal = 'ease'")[0]
    result = run_cli(dirty_url, "refresh", "--cf", "--ease-method", "blocks", "--ease-lambda", "301",
                     "--ease-memory-limit", "0.000001")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: EASE (blocks) for tenant default needs about ")
    assert "fit refused, published lists kept" in lines[-1] and "Traceback" not in result.output
    after = query(dirty_url, "select count(*) as n, sum(score) as s from pgrecs.item_neighbors where signal = 'ease'")[0]
    assert after == before
    fit = query(dirty_url, "select * from pgrecs.model_fits order by fit_id desc limit 1")[0]
    assert fit["status"] == "refused" and fit["estimated_bytes"] > fit["memory_limit_bytes"] and fit["fit_seconds"] is None


AUDIT_MODELS = "stg_pgrecs__items dim_items_enriched fct_item_audit fct_catalog_audit_summary"


def test_the_merchants_override_decides_in_the_marts(dirty_url, built):
    from pgrecs import dbt

    decided = "select external_id, rule_problem, embed_override, text_problem, embeddable from recs_marts.dim_items_enriched"
    with psycopg.connect(dirty_url) as conn:
        conn.execute("update pgrecs.items set embed_override = (external_id = 'a5') where external_id in ('a1', 'a5')")
    try:
        dbt.run(dirty_url, "build", select=AUDIT_MODELS)
        rows = by_external(dirty_url, decided)
        assert {k: (r["rule_problem"], r["embed_override"], r["text_problem"], r["embeddable"])
                for k, r in rows.items() if k in ("a1", "a5")} == {
            "a1": (None, False, "refused by the merchant", False),
            "a5": ("no words", True, None, True)}
        flags = by_external(dirty_url, "select external_id, quality_flags from recs_marts.fct_item_audit")
        assert "not_embeddable" in flags["a1"]["quality_flags"] and "not_embeddable" not in flags["a5"]["quality_flags"]
    finally:
        with psycopg.connect(dirty_url) as conn:
            conn.execute("update pgrecs.items set embed_override = null")
        dbt.run(dirty_url, "build", select=AUDIT_MODELS)
