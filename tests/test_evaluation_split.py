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


def test_leave_last_out_picks_latest_and_breaks_ties_by_load_order():
    inter = _inter([
        (1, 0, 10, 100), (2, 0, 11, 200), (3, 0, 12, 200),   # tie at 200: event 3 loaded last -> item 12
        (4, 1, 10, 50), (5, 1, 13, 40),                       # latest is item 10 (ts 50)
        (6, 2, 14, 10), (7, 2, 14, 20),                       # one distinct item: not a test user
        (8, 1, 10, 10),                                       # user 1 also saw item 10 earlier
    ])
    split = splits.leave_last_out(inter)
    assert split.test == {0: {12}, 1: {10}}
    train = split.train(inter)
    train_pairs = set(zip(train.user.tolist(), train.item.tolist()))
    assert (0, 12) not in train_pairs and (1, 10) not in train_pairs  # no test pair trains
    assert {(0, 10), (0, 11), (1, 13), (2, 14)} <= train_pairs


def test_time_split_min_history_and_slices():
    inter = _inter([
        (1, 0, 1, 10), (2, 0, 2, 11), (3, 0, 3, 30),   # warm user, test item 3
        (4, 1, 1, 12), (5, 1, 4, 31),                   # one training item, test item 4 (cold item)
        (6, 2, 2, 32),                                  # new user
        (7, 0, 1, 33),                                  # repeat of a training item: not a target
    ])
    split = splits.time_split(inter, cutoff=20, min_history=1)
    assert split.test == {0: {3}, 1: {4}}
    assert split.cold_items(inter) == {3, 4}
    assert split.new_users(inter) == {0, 1}  # both have <= 2 training items
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
