"""The fast request path: the scoring stays index-driven for the API role under row-level
security, one statement ranks and logs, and failures log nothing."""

from __future__ import annotations

import threading

import pytest

import scoring_world as world


@pytest.fixture
def client(client, conn):
    """The API over the scoring world; client.ids maps external ids to item ids."""
    client.ids = world.build(conn)
    conn.commit()
    return client


def test_category_lookup_is_an_index_condition_for_the_api_role(conn):
    # under RLS only leakproof operators become index conditions: text[] equality is not (a scan
    # of every item, ~35 ms at 100k items), text equality on the generated category_key is
    conn.execute("set role pgrecs_api")
    conn.execute("select set_config('pgrecs.tenant', 'default', false)")
    conn.execute("set enable_seqscan = off")
    plan = "\n".join(r[0] for r in conn.execute(
        "explain (costs off) select i.item_id from pgrecs.items i"
        " where i.tenant_id = 'default' and i.category_key = %s", ("shoes\x1frunning",)))
    assert "items_tenant_category_key" in plan and "category_key =" in plan.split("Index Cond:", 1)[1], plan
    conn.rollback()


def test_category_key_is_the_joined_path(conn):
    conn.execute("insert into pgrecs.items (external_id, title, category_path) values ('k1', 'K', '{Shoes,Running}')")
    conn.execute("update pgrecs.items set category_path = '{Shoes,Trail}' where external_id = 'k1'")
    assert conn.execute("select category_key from pgrecs.items where external_id = 'k1'").fetchone() == (
        "Shoes\x1fTrail",)


def test_ranked_list_and_log_row_come_from_one_statement(client, conn):
    body = client.get("/items/A/recommendations?placement=t&k=3").json
    logged = conn.execute(
        "select item_ids, scores from pgrecs.recommendation_requests where request_id = %s",
        (body["request_id"],)).fetchone()
    assert logged[0] == [i["item_id"] for i in body["items"]]
    assert logged[1] == pytest.approx([i["score"] for i in body["items"]], rel=1e-6)


def test_a_failed_ranking_logs_nothing(client, conn):
    before = conn.execute("select count(*) from pgrecs.recommendation_requests").fetchone()[0]
    resp = client.get("/items/A/recommendations?placement=no_such_placement")
    assert resp.status_code == 404 and "no_such_placement" in resp.json["detail"]
    assert conn.execute("select count(*) from pgrecs.recommendation_requests").fetchone()[0] == before
    # the connection is usable again by the next request
    assert client.get("/items/A/recommendations?placement=t&k=2").status_code == 200


def test_an_empty_list_is_still_logged(client, conn):
    resp = client.get("/items/A/recommendations?placement=t&k=3&price_min=999999")
    assert resp.status_code == 200 and resp.json["items"] == []
    logged = conn.execute("select item_ids from pgrecs.recommendation_requests where request_id = %s",
                          (resp.json["request_id"],)).fetchone()
    assert logged == ([],)


def test_examples_cost_the_same_statements_whatever_their_number(client, conn, monkeypatch):
    import psycopg

    conn.execute("insert into pgrecs.items (external_id, title)"
                 " select 'many-' || g, 'Many ' || g from generate_series(1, 100) as g")
    conn.commit()
    sent: list[str] = []
    execute = psycopg.Connection.execute
    request_thread = threading.get_ident()  # the test client serves the request in this thread

    def counted(self, query, *args, **kwargs):
        if threading.get_ident() == request_thread:  # not the pool's own maintenance statements
            sent.append(str(query))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", counted)
    counts = []
    for n in (1, 1, 100):  # the first request also opens the pool
        sent.clear()
        resp = client.post("/recommendations", json={"examples": [f"many-{i}" for i in range(1, n + 1)],
                                                     "placement": "t", "k": 3})
        assert resp.status_code == 200, resp.json
        counts.append(len(sent))
    # the checkout's setup statement and the one that ranks and logs
    assert counts[1] == counts[2] == 2, (counts, sent)


def test_an_unknown_example_is_a_404_naming_it(client):
    resp = client.post("/recommendations", json={"examples": ["A", "no-such-sku"], "placement": "t"})
    assert resp.status_code == 404 and resp.json["detail"] == "unknown item: no-such-sku"
