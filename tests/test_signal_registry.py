"""The signal registry (pgrecs.signals): a new neighbour signal is one row and its lists, then it
is scored, explained, diagnosed and evaluated with no code naming it."""

from __future__ import annotations

import json

import psycopg
import pytest

import scoring_world as world

EDITORIAL = ("insert into pgrecs.signals (signal, kind, reason_format, description)"
             " values ('editorial', 'neighbors', 'picked by our editors to go with %s',"
             " 'Hand-made lists: what the merchandising team pairs with an item.')")


def _publish(conn, rows) -> list[tuple]:
    """Hand-made lists published as a refresh publishes a signal: from a relation, replacing the
    lists of every tenant in it (pgrecs.publish_signal_lists, the statement of publish_signals)."""
    conn.execute("create temporary table editorial_lists (tenant_id text, item_id bigint, neighbor_item_id bigint,"
                 " score real, rank smallint)")
    with conn.cursor() as cur:
        cur.executemany("insert into editorial_lists values ('default', %s, %s, %s, %s)", rows)
    return conn.execute("select * from pgrecs.publish_signal_lists('editorial', 'pg_temp.editorial_lists')").fetchall()


def test_registry_holds_every_signal_with_todays_wording(sql):
    rows = dict((s, (k, r)) for s, k, r in sql.execute("select signal, kind, reason_format from pgrecs.signals"))
    assert rows == {
        "semantic": ("neighbors", "similar to %s"),
        "cooccurrence": ("neighbors", "often bought together with %s"),
        "sequence": ("neighbors", "often chosen next after %s"),
        "ease": ("neighbors", "customers who chose %s also chose this"),
        "popularity": ("item", "popular right now"),
        "trending": ("item", "trending"),
        "category_popularity": ("item", "popular in %s"),
        "margin": ("item", None),
    }


def test_neighbour_lists_reference_the_registry(conn):
    a, b = (conn.execute("insert into pgrecs.items (external_id, title) values (%s, 'x') returning item_id",
                         (e,)).fetchone()[0] for e in ("a", "b"))
    insert = "insert into pgrecs.item_neighbors (signal, item_id, neighbor_item_id, score, rank) values (%s, %s, %s, 0.5, 1)"
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="signal editorial, which pgrecs.signals does not"):
        with conn.transaction():
            conn.execute(insert, ("editorial", a, b))
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="signal popularity"):  # an item signal has no lists
        with conn.transaction():
            conn.execute(insert, ("popularity", a, b))
    conn.execute(EDITORIAL)
    conn.execute(insert, ("editorial", a, b))
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="signal editorial still has neighbour lists"):
        with conn.transaction():
            conn.execute("delete from pgrecs.signals where signal = 'editorial'")
    conn.execute("delete from pgrecs.item_neighbors where signal = 'editorial'")
    conn.execute("delete from pgrecs.signals where signal = 'editorial'")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="signal editorial is not a neighbour signal"):
        _publish(conn, [])


def test_a_weight_for_an_unregistered_signal_is_refused(conn):
    world.build(conn)
    conn.execute("update pgrecs.placements set weights = '{\"semantic\": 1, \"editoral\": 0.5}' where placement = 't'")
    with pytest.raises(psycopg.errors.InvalidParameterValue,
                       match=r"placement t: weights name unregistered signals: editoral \(pgrecs.signals"):
        conn.execute("select * from recs.recommend_for_item(item => 'A', placement => 't')").fetchall()


def test_a_new_signal_is_scored_explained_and_diagnosed(conn):
    ids = world.build(conn)
    conn.execute(EDITORIAL)
    published = _publish(conn, [(ids["A"], ids["D"], 0.9, 1), (ids["A"], ids["G"], 0.3, 2)])
    assert published == [("default", 1, 2)]  # one list, two rows
    conn.execute("update pgrecs.placements set weights = '{\"semantic\": 1, \"editorial\": 2}' where placement = 't'")

    rows = conn.execute(
        "select external_id, score, contributions, reasons from recs.recommend_for_item("
        "item => 'A', k => 10, placement => 't', explain => true)").fetchall()
    by_item = {r[0]: r for r in rows}
    # D: the editorial list's head (normalised 1, weight 2) and no semantic score
    assert rows[0][0] == "D" and rows[0][1] == pytest.approx(2.0)
    assert by_item["D"][2]["editorial"]["contribution"] == pytest.approx(2.0)
    assert by_item["D"][2]["editorial"]["anchor_title"] == "Alpha runner"
    assert by_item["G"][2]["editorial"]["raw"] == pytest.approx(0.3)
    assert by_item["D"][3] == ["picked by our editors to go with this item"]
    # the reason names the anchor as every neighbour signal does, here an example of recs.recommend
    [(reason,)] = conn.execute(
        "select reasons[1] from recs.recommend(examples_positive => array[%s]::bigint[], k => 1, placement => 't')",
        (ids["A"],)).fetchall()
    assert reason == 'picked by our editors to go with "Alpha runner" (your example)'

    conn.execute("update pgrecs.placements set weights = '{\"editorial\": 1}' where placement = 't'")
    [(why, detail)] = conn.execute("select reason, detail from recs.why_not(item => 'B', placement => 't',"
                                   " context_item => 'A')").fetchall()
    assert (why, detail) == ("not_candidate", 'not a candidate of any signal: editorial: not a neighbour of "Alpha runner"')


@pytest.mark.slow
def test_a_new_signal_is_evaluated(cli, conn, db_url, tmp_path):
    """`pgrecs evaluate` scores the registered signal on its own: its lists, which no event feeds,
    are copied into the scratch database with its registry row."""
    from test_evaluation_run import _structured_events

    from pgrecs.ingest import ingest_records

    items, events = _structured_events()
    ingest_records(conn, "items", items, source="test")
    ingest_records(conn, "events", events, source="test")
    conn.execute(EDITORIAL)
    # the editors pair every item with the rest of its cluster of ten
    ids = dict(conn.execute("select external_id, item_id from pgrecs.items").fetchall())
    rows = [(ids[f"i{i}"], ids[f"i{j}"], 1.0 - 0.01 * r, r + 1)
            for i in range(30) for r, j in enumerate(j for j in range(i // 10 * 10, i // 10 * 10 + 10) if j != i)]
    _publish(conn, rows)
    conn.commit()

    result = cli("evaluate", "--strategies", "random,editorial", "--k", "10", "--out", str(tmp_path),
                 "--dataset", "toy")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "evaluation.json").read_text())
    ndcg = {n: r["slices"]["all"]["metrics"]["ndcg@10"] for n, r in report["strategies"].items()}
    assert set(ndcg) == {"random", "editorial"}
    assert ndcg["editorial"] > ndcg["random"] + 0.1  # the clusters are what the editors paired
    with psycopg.connect(db_url) as check:
        assert check.execute("select weights from pgrecs.placements where placement = 'home_for_you'"
                             ).fetchone()[0].get("editorial") is None  # the placements are left as they were
