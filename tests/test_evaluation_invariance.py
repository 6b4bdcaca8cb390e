"""The order of rows inside a tie decides nothing: the same real events (a slice of UCI Online
Retail, where every line of an invoice shares one timestamp) loaded as published and with the rows
inside each (user, timestamp) group shuffled give the same test sets and the same metrics for every
strategy, pgrecs' (through the serving SQL) and the external baselines, under both protocols."""

from __future__ import annotations

import hashlib

import psycopg
import pytest

from conftest import TEMPLATE, create_database, drop_database, with_database
from pgrecs.evaluation import runner, ties
from pgrecs.evaluation.data import load_catalog, load_interactions

CUSTOMERS = 15


@pytest.fixture(scope="module")
def retail_slice(shared_data):
    """Every purchase line of CUSTOMERS customers (the first by a hash of their id among those with
    3 to 8 invoices), and the items they bought."""
    from pgrecs import datasets

    events = list(datasets.iter_events("retail", shared_data))
    invoices: dict[str, set] = {}
    for e in events:
        invoices.setdefault(e["user_id"], set()).add(e["occurred_at"])
    eligible = sorted((c for c, inv in invoices.items() if 3 <= len(inv) <= 8),
                      key=lambda c: hashlib.md5(c.encode()).hexdigest())[:CUSTOMERS]
    chosen = set(eligible)
    rows = [e for e in events if e["user_id"] in chosen]
    bought = {e["item_id"] for e in rows}
    items = [i for i in datasets.iter_items("retail", shared_data) if i["external_id"] in bought]
    return items, rows


def _database_pair(server_url, items, events):
    """Two databases with one catalogue and its embeddings (the second cloned from the first, so the
    embeddings are byte-identical): the events as published, and with the ties shuffled."""
    from pgrecs.db import connect
    from pgrecs.embeddings import worker
    from pgrecs.ingest import ingest_records

    published = create_database(server_url, TEMPLATE)
    with connect(published) as conn:
        ingest_records(conn, "items", items, source="test")
        conn.commit()
    worker.drain(published, "default", progress=False)
    name = f"{psycopg.conninfo.conninfo_to_dict(published)['dbname']}_shuffled"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"create database {name} template {psycopg.conninfo.conninfo_to_dict(published)['dbname']}")
    shuffled = with_database(server_url, name)
    shuffled_events = ties.shuffle_ties(events, seed=3)
    assert shuffled_events != events and sorted(map(repr, shuffled_events)) == sorted(map(repr, events))
    for url, rows in ((published, events), (shuffled, shuffled_events)):
        with connect(url) as conn:
            ingest_records(conn, "events", rows, source="test")
            conn.commit()
    return published, shuffled


def _test_sets(url, protocol):
    from pgrecs.db import connect

    with connect(url) as conn:
        catalog = load_catalog(conn, "default", with_embeddings=False)
        inter = load_interactions(conn, "default", catalog)
    split = runner.make_split(inter, runner.Options(protocol=protocol), catalog.size)
    ext = {int(c): i for c, i in enumerate(catalog.item_ids)}
    with connect(url) as conn:
        external = dict(conn.execute("select item_id, external_id from pgrecs.items").fetchall())

    def named(sets):
        return {inter.user_keys[u]: sorted(external[ext[i]] for i in items) for u, items in sets.items()}

    return named(split.test), named(split.repeat), split.stats


def _metrics(report):
    return {name: row["slices"] for name, row in report["strategies"].items()}


@pytest.mark.slow  # embeds the catalogue with the model
def test_shuffled_ties_change_no_test_set_and_no_metric(server_url, template_url, retail_slice):
    items, events = retail_slice
    published, shuffled = _database_pair(server_url, items, events)
    try:
        # the slice has ties to shuffle: invoices of several lines
        groups: dict[tuple, int] = {}
        for e in events:
            groups[(e["user_id"], e["occurred_at"])] = groups.get((e["user_id"], e["occurred_at"]), 0) + 1
        assert max(groups.values()) >= 5
        for protocol in ("leave-last-out", "time-split"):
            test_a, repeat_a, stats_a = _test_sets(published, protocol)
            test_b, repeat_b, stats_b = _test_sets(shuffled, protocol)
            assert test_a and test_a == test_b and repeat_a == repeat_b, protocol
            assert stats_a == stats_b
        # every strategy under leave-last-out (the protocol the row order used to decide), the
        # external baselines under the time split as well
        for protocol, strategies in (("leave-last-out", None),
                                     ("time-split", tuple(runner.PYTHON_STRATEGIES))):
            reports = [runner.evaluate(url, "default", runner.Options(protocol=protocol, ks=(10,), strategies=strategies,
                                                                      dataset="retail-slice"))
                       for url in (published, shuffled)]
            a, b = (_metrics(r) for r in reports)
            assert set(a) >= set(runner.PYTHON_STRATEGIES)
            if strategies is None:
                assert {"sequence", "cooccurrence", "ease", "semantic", "popularity", "hybrid:home_for_you"} <= set(a)
            differ = sorted({(name, sl, m) for name in a for sl in a[name] for m in a[name][sl]["metrics"]
                             if a[name][sl]["metrics"][m] != ((b.get(name) or {}).get(sl) or {}).get("metrics", {}).get(m)})
            assert not differ, (protocol, differ[:10])
            assert a == b, protocol
            assert reports[0]["comparisons"] == reports[1]["comparisons"]
            # and the strategies are not trivially equal: the collaborative ones find something
            assert max(s["all"]["metrics"]["hit_rate@10"] for s in a.values()) > 0
    finally:
        drop_database(server_url, shuffled)
        drop_database(server_url, published)
