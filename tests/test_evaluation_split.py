"""Protocols: the right test item, tie-breaking by load order, and no test event in anything
the training side is built from (the scratch database and the Python baselines)."""

from __future__ import annotations

import numpy as np
import psycopg

from pgrecs.evaluation import baselines, scratch, splits
from pgrecs.evaluation.data import Interactions, load_catalog, load_interactions


def _inter(rows):
    """rows: (event_id, user, item, ts)"""
    a = np.array(rows, dtype=np.float64)
    users = sorted(set(int(u) for u in a[:, 1]))
    return Interactions(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2].astype(np.int64), a[:, 3],
                        np.array(users), np.array([f"u{u}" for u in users], dtype=object))


def test_leave_last_out_holds_out_the_whole_last_tie_group():
    inter = _inter([
        (1, 0, 10, 100), (2, 0, 11, 200), (3, 0, 12, 200),   # tie at 200: both 11 and 12 are targets
        (4, 1, 10, 50), (5, 1, 13, 40),                       # latest is item 10 (ts 50) ...
        (8, 1, 10, 10),                                       # ... which user 1 had before: a repeat
        (6, 2, 14, 10), (7, 2, 15, 10),                       # one tie group, no history: not a test user
        (9, 3, 16, 5), (10, 3, 17, 9), (11, 3, 16, 9),        # last group {16, 17}; 16 had before
    ])
    split = splits.leave_last_out(inter)
    assert split.test == {0: {11, 12}, 3: {17}}
    assert split.repeat == {1: {10}, 3: {16}}
    assert split.stats["repeat_only_users"] == 1 and split.stats["test_pairs"] == 3
    train = split.train(inter)
    # history strictly earlier than the group; users without history keep every event
    assert sorted(train.event_id.tolist()) == [1, 5, 6, 7, 8, 9]


def test_leave_last_out_takes_whole_sessions_where_events_carry_them():
    rows = [(1, 0, 10, 100), (2, 0, 11, 160), (3, 0, 12, 161), (4, 0, 13, 161)]
    inter = _inter(rows)
    inter.session = np.array([None, "inv1", "inv1", "inv1"], dtype=object)  # one invoice over two minutes
    split = splits.leave_last_out(inter)
    assert split.test == {0: {11, 12, 13}}
    assert split.train(inter).event_id.tolist() == [1]


def test_splits_do_not_depend_on_row_order_inside_ties():
    rows = [(1, 0, 10, 100), (2, 0, 11, 200), (3, 0, 12, 200), (4, 1, 13, 50), (5, 1, 10, 50), (6, 1, 11, 20),
            (7, 0, 13, 300), (8, 1, 12, 300), (9, 1, 14, 300)]
    permuted = [rows[i] for i in (0, 2, 1, 4, 3, 5, 6, 8, 7)]
    for protocol in (splits.leave_last_out, lambda x: splits.time_split(x, cutoff=250)):
        a, b = protocol(_inter(rows)), protocol(_inter(permuted))
        assert a.test == b.test and a.repeat == b.repeat
        assert sorted(_inter(rows).event_id[a.train_mask]) == sorted(_inter(permuted).event_id[b.train_mask])


def test_time_split_limits_targets_to_items_known_at_the_cutoff():
    inter = _inter([
        (1, 0, 1, 10), (2, 0, 2, 15), (3, 1, 1, 12),    # training: items 1 and 2 are known
        (4, 0, 3, 20), (5, 0, 2, 20), (6, 1, 2, 20),    # the tie at the cut-off (20) is all test
        (7, 1, 4, 30), (8, 0, 1, 25),                   # 3 and 4 first seen after the cut-off: cold
        (9, 2, 2, 20),                                  # no history: not a test user
    ])
    split = splits.time_split(inter, cutoff=20, min_history=1, n_items=6)
    assert split.test == {1: {2}}
    assert split.repeat == {0: {1, 2}}
    assert split.stats["cold_test_pairs"] == 2 and split.stats["known_items"] == 2
    assert split.candidates.tolist() == [False, True, True, False, False, False]
    assert split.train_mask.tolist() == [True, True, True, False, False, False, False, False, False]


def test_time_split_min_history_and_slices():
    inter = _inter([
        (1, 0, 1, 10), (2, 0, 2, 11), (3, 1, 1, 12), (4, 0, 3, 15),   # training
        (5, 1, 2, 31),                                                # user 1: target 2
        (6, 0, 1, 33),                                                # user 0: a repeat only
        (7, 2, 2, 32),                                                # user 2 has no history
    ])
    split = splits.time_split(inter, cutoff=20, min_history=1)
    assert split.test == {1: {2}} and split.repeat == {0: {1}}
    assert split.new_users(inter) == {1}  # at most 2 training items
    with_new = splits.time_split(inter, cutoff=20, min_history=0)
    assert with_new.test[2] == {2}
    assert not inter.ts[with_new.train_mask].max() >= 20


def test_baselines_never_recommend_training_items():
    inter = _inter([(i, u, (u + i) % 7, i) for i, u in enumerate([0, 0, 0, 1, 1, 2, 2, 2, 3, 3])])
    split = splits.leave_last_out(inter)
    data = baselines.TrainingData.from_interactions(split.train(inter), 4, 7)
    seen = split.train_items_by_user(inter)
    for strat in (baselines.PopularityStrategy(data), baselines.ItemKNNStrategy(data),
                  baselines.EASEStrategy(data, 10.0), baselines.RandomStrategy(data)):
        recs = strat.recommend(split.test.keys(), 3)
        for u, items in recs.items():
            assert not set(items.tolist()) & seen[u], strat.name


def test_ease_matches_closed_form():
    rng = np.random.default_rng(0)
    x = (rng.random((30, 8)) < 0.3).astype(np.float32)
    x[0, :] = 1  # every item has a user
    import scipy.sparse as sp

    data = baselines.TrainingData(sp.csr_matrix(x), 30, 8)
    ease = baselines.EASEStrategy(data, 5.0)
    g = x.T @ x + 5.0 * np.eye(8)
    p = np.linalg.inv(g)
    b = np.eye(8) - p / np.diag(p)
    assert np.allclose(ease.b, b, atol=1e-5)
    assert np.allclose(np.diag(ease.b), 0)


def _load(conn, events):
    from pgrecs.ingest import ingest_records

    items = sorted({e["item_id"] for e in events})
    ingest_records(conn, "items", [{"external_id": i, "title": f"Item {i}"} for i in items], source="test")
    ingest_records(conn, "events", events, source="test")
    conn.commit()


def test_scratch_database_holds_only_training_events(db_url):
    from pgrecs.db import connect

    events = []
    for u in range(6):
        for j in range(4):
            events.append({"user_id": f"u{u}", "item_id": f"i{(u + j) % 8}", "event_type": "purchase",
                           "occurred_at": f"2024-01-{1 + j + u:02d}T00:00:00+00:00", "value": 1.0})
    with connect(db_url) as conn:
        _load(conn, events)
        catalog = load_catalog(conn, "default")
        inter = load_interactions(conn, "default", catalog)
    split = splits.leave_last_out(inter)
    test_event_ids = set(inter.event_id[~split.train_mask].tolist())
    assert test_event_ids
    with scratch.scratch_database(db_url, "t") as url:
        counts = scratch.populate(db_url, url, "default", inter.event_id[split.train_mask])
        with psycopg.connect(url) as conn:
            ids = {r[0] for r in conn.execute("select event_id from pgrecs.events")}
            items = conn.execute("select count(*) from pgrecs.items").fetchone()[0]
            last = conn.execute("select max(occurred_at) > now() - interval '1 minute' from pgrecs.events").fetchone()[0]
            pairs = set(conn.execute("select user_id, item_id from pgrecs.events").fetchall())
    assert ids == set(inter.event_id[split.train_mask].tolist())
    assert not ids & test_event_ids
    assert counts["pgrecs.events"] == int(split.train_mask.sum())
    assert items == catalog.size and last  # whole catalogue, history shifted to "now"
    for u, test_items in split.test.items():
        for i in test_items:
            assert (int(inter.user_ids[u]), int(catalog.item_ids[i])) not in pairs


def test_baselines_break_score_ties_by_tie_key_not_item_code():
    import scipy.sparse as sp

    # user 0 saw item 0; items 1..4 all score the same for popularity (one user each)
    m = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=np.float32))
    tie_rank = np.array([4, 3, 0, 2, 1])  # item 2 first in tie-key order, then 4, 3, 1
    data = baselines.TrainingData(m, 3, 5, tie_rank)
    assert baselines.PopularityStrategy(data).recommend([0], 3)[0].tolist() == [2, 4, 3]
    allowed = np.array([True, True, False, True, True])
    limited = baselines.TrainingData(m, 3, 5, tie_rank, allowed)
    assert baselines.PopularityStrategy(limited).recommend([0], 3)[0].tolist() == [4, 3, 1]
    # item codes in another order, the same tie keys: the same items come out
    perm = np.array([3, 0, 4, 1, 2])  # new code -> old code
    moved = baselines.TrainingData(m[:, perm].tocsr(), 3, 5, tie_rank[perm])
    out = baselines.PopularityStrategy(moved).recommend([0], 3)[0]
    assert perm[out].tolist() == [2, 4, 3]


def test_tie_key_is_a_hash_of_the_external_id(sql):
    from pgrecs.ingest import ingest_records

    ingest_records(sql, "items", [{"external_id": x, "title": x} for x in ("b", "a", "c")], source="test")
    rows = dict(sql.execute("select external_id, tie_key from pgrecs.items").fetchall())
    expected = {x: int.from_bytes(__import__("hashlib").md5(x.encode()).digest()[:8], "big", signed=True)
                for x in ("a", "b", "c")}
    assert rows == expected
