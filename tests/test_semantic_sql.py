"""recs.similar_items / recs.search_by_vector: filters, k, strategy choice, exclusions, catalogue of functions.

Uses synthetic normalised vectors written straight into pgrecs.item_embeddings (the model itself is
covered by test_embeddings.py), so the exact answer is known from numpy.
"""

from __future__ import annotations

import json

import numpy as np
import psycopg
import pytest
from pgvector import HalfVector
from psycopg.conninfo import conninfo_to_dict

from conftest import TEMPLATE, create_database, drop_database, rolled_back

N = 600


def _build_catalog(conn):
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(8, 384))
    vectors = centers[rng.integers(0, 8, N)] + 0.6 * rng.normal(size=(N, 384))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16).astype(np.float32)
    rows = [(f"x{i}", f"Item {i}", ["Books", "Fiction"] if i % 10 == 0 else ["Books", "Travel"] if i % 3 == 0 else ["Music"],
             float(i % 100), 0 if i % 4 == 0 else 5, i % 50 != 7) for i in range(N)]
    with conn.cursor() as cur:
        cur.executemany("insert into pgrecs.items (external_id, title, category_path, price, stock, active) "
                        "values (%s, %s, %s, %s, %s, %s)", rows)
    ids = [r[0] for r in conn.execute("select item_id from pgrecs.items order by item_id")]
    with conn.cursor() as cur:
        cur.executemany("insert into pgrecs.item_embeddings (item_id, model_id, embedding, text_sha256) "
                        "values (%s, 1, %s, '\\x00')", [(i, HalfVector(v)) for i, v in zip(ids, vectors)])
    conn.execute("delete from pgrecs.embedding_queue")
    # as in a database made for one test: no statistics until a test runs ANALYZE itself
    for table in ("pgrecs.items", "pgrecs.item_embeddings"):
        conn.execute(f"alter table {table} set (autovacuum_enabled = false)")
    conn.commit()
    meta = {"ids": np.array(ids), "vectors": vectors, "rows": rows}
    return meta


@pytest.fixture(scope="module")
def catalog_db(server_url, template_url):
    """The synthetic catalog, built once for this module."""
    from pgrecs.db import connect

    url = create_database(server_url, TEMPLATE)
    with connect(url, tenant="default") as conn:
        meta = _build_catalog(conn)
    yield url, meta
    drop_database(server_url, url)


@pytest.fixture
def catalog(catalog_db):
    return catalog_db[1]


@pytest.fixture
def conn(request, server_url, catalog_db):
    """The catalog inside a transaction that is rolled back; a test marked `commits` gets a copy of its own."""
    if request.node.get_closest_marker("commits") is None:
        yield from rolled_back(catalog_db[0])
        return
    from pgrecs.db import connect

    url = create_database(server_url, conninfo_to_dict(catalog_db[0])["dbname"])
    try:
        with connect(url) as connection:
            yield connection
    finally:
        drop_database(server_url, url)


def exact(catalog, query, k, keep, exclude=None):
    sims = catalog["vectors"] @ query
    order = [j for j in np.argsort(-sims, kind="stable") if keep(j) and catalog["ids"][j] != exclude]
    return [int(catalog["ids"][j]) for j in order[:k]]


def active(catalog, j):
    return catalog["rows"][j][5]


def test_similar_items_unfiltered_matches_exact(conn, catalog):
    for j in (0, 5, 77):
        got = conn.execute("select item_id, rank from recs.similar_items(%s, 10)", (int(catalog["ids"][j]),)).fetchall()
        assert [r[1] for r in got] == list(range(1, 11))
        want = exact(catalog, catalog["vectors"][j], 10, lambda x: active(catalog, x), exclude=catalog["ids"][j])
        assert len(set(r[0] for r in got) & set(want)) >= 9


def _list(conn, item_id):
    return conn.execute("select neighbor_item_id, score from pgrecs.item_neighbors"
                        " where signal = 'semantic' and item_id = %s order by rank", (item_id,)).fetchall()


def test_similar_items_reads_the_maintained_list_within_its_length(conn, catalog):
    ids = [int(i) for i in catalog["ids"]]
    conn.execute("select pgrecs.refresh_semantic_neighbors(%s, 50, false)", (ids,))
    q = ids[5]
    listed = _list(conn, q)
    assert len(listed) == 50
    got = conn.execute("select item_id, score, rank from recs.similar_items(%s, 10)", (q,)).fetchall()
    assert [(r[0], r[1]) for r in got] == listed[:10] and [r[2] for r in got] == list(range(1, 11))
    want = exact(catalog, catalog["vectors"][5], 10, lambda x: active(catalog, x), exclude=q)
    assert len({r[0] for r in got} & set(want)) >= 9
    # served from the list: an entry moved to the top there is first here; a filter or a k beyond
    # the list's length searches the index, which does not know that entry's new score
    far = listed[-1][0]
    conn.execute("update pgrecs.item_neighbors set score = 0.9999 where signal = 'semantic'"
                 " and item_id = %s and neighbor_item_id = %s", (q, far))
    assert conn.execute("select item_id, score from recs.similar_items(%s, 3)", (q,)).fetchone() == (far, 0.9999)
    for call in ("select item_id from recs.similar_items(%s, 51)",
                 "select item_id from recs.similar_items(%s, 3, '{\"price_max\": 1000}')"):
        assert conn.execute(call, (q,)).fetchone()[0] != far, call
    # a neighbour deactivated before the workers took it out of the list is never served, and the
    # list, one short now, leaves k = 50 to the index
    gone = listed[0][0]
    conn.execute("update pgrecs.items set active = false where item_id = %s", (gone,))
    served = [r[0] for r in conn.execute("select item_id from recs.similar_items(%s, 49)", (q,))]
    assert served == [far] + [n for n, _ in listed if n not in (gone, far)][:48]
    assert gone not in {r[0] for r in conn.execute("select item_id from recs.similar_items(%s, 50)", (q,))}
    assert conn.execute("select count(*) from recs.similar_items(%s, 50)", (q,)).fetchone()[0] == 50


def test_an_item_embedded_again_is_rescored_in_the_lists_it_sits_in(conn, catalog):
    ids = [int(i) for i in catalog["ids"]]
    conn.execute("select pgrecs.refresh_semantic_neighbors(%s, 20, false)", (ids,))
    moved, holder = conn.execute(
        "select neighbor_item_id, item_id from pgrecs.item_neighbors where signal = 'semantic' and rank = 1"
        " order by item_id limit 1").fetchone()
    # its text changed: the new embedding points elsewhere (the opposite direction)
    j = ids.index(moved)
    conn.execute("update pgrecs.item_embeddings set embedding = %s where item_id = %s",
                 (HalfVector(-catalog["vectors"][j]), moved))
    conn.execute("select pgrecs.refresh_semantic_neighbors(%s, 20, true)", ([moved],))
    row = conn.execute("select score, rank from pgrecs.item_neighbors where signal = 'semantic'"
                       " and item_id = %s and neighbor_item_id = %s", (holder, moved)).fetchone()
    k = ids.index(holder)
    fresh = float(catalog["vectors"][k] @ -catalog["vectors"][j])
    assert row is not None and abs(row[0] - fresh) < 2e-3 and row[1] == 20  # now the worst of the list
    assert moved not in {r[0] for r in conn.execute("select item_id from recs.similar_items(%s, 10)", (holder,))}


@pytest.mark.parametrize("max_rows", [0, 100000])  # 0 forces HNSW, 100000 forces the exact scan
@pytest.mark.parametrize("filters,keep", [
    ({"category": "Books > Fiction"}, lambda row: row[2][:2] == ["Books", "Fiction"]),
    ({"category": "Books"}, lambda row: row[2][:1] == ["Books"]),
    ({"price_min": 10, "price_max": 30, "in_stock": True}, lambda row: 10 <= row[3] <= 30 and row[4] > 0),
    ({"in_stock": False}, lambda row: True),  # false asks for nothing
])
def test_filters_honoured_and_k_filled(conn, catalog, filters, keep, max_rows):
    conn.execute("update pgrecs.embedding_models set exact_scan_max_rows = %s", (max_rows,))
    query = catalog["vectors"][3]
    got = conn.execute("select item_id from recs.search_by_vector(%s, 20, %s::jsonb)",
                       (HalfVector(query), json.dumps(filters))).fetchall()
    got = [r[0] for r in got]
    allowed = {int(catalog["ids"][j]) for j in range(N) if keep(catalog["rows"][j]) and active(catalog, j)}
    assert len(got) == 20 and set(got) <= allowed
    want = exact(catalog, query, 20, lambda j: int(catalog["ids"][j]) in allowed)
    assert len(set(got) & set(want)) >= 19


def test_k_larger_than_matches_returns_all_matches(conn, catalog):
    # 60 Fiction items, 59 of them active (i % 50 == 7 never divides by 10... all active); k=100 returns them all
    conn.execute("update pgrecs.embedding_models set exact_scan_max_rows = 0")  # even through the HNSW path
    got = conn.execute("select count(*) from recs.search_by_vector(%s, 100, '{\"category\": [\"Books\", \"Fiction\"]}')",
                       (HalfVector(catalog["vectors"][0]),)).fetchone()[0]
    assert got == sum(1 for j in range(N) if catalog["rows"][j][2] == ["Books", "Fiction"] and active(catalog, j))


def test_strategy_chosen_by_selectivity(conn, catalog):
    conn.execute("update pgrecs.embedding_models set exact_scan_max_rows = 100")
    assert conn.execute("select pgrecs.similarity_strategy('{\"category\": \"Books > Fiction\"}')").fetchone()[0] == "exact"
    assert conn.execute("select pgrecs.similarity_strategy('{}')").fetchone()[0] == "hnsw"
    assert conn.execute("select pgrecs.similarity_strategy('{\"price_max\": 5}')").fetchone()[0] == "exact"


@pytest.mark.parametrize("category,price_min,price_max", [
    (["Music"], None, None), (["Books"], None, None), (["Books", "Fiction"], None, None), (["Nope"], None, None),
    (None, None, 5), (None, 20, 40), (["Books"], None, 50),
])
def test_filter_estimate_is_an_upper_bound(conn, catalog, category, price_min, price_max):
    conn.execute("analyze pgrecs.items")
    estimate = conn.execute("select pgrecs.similarity_filter_estimate(%s, %s, %s)",
                            (category, price_min, price_max)).fetchone()[0]
    actual = sum(1 for row in catalog["rows"]
                 if (category is None or row[2][:len(category)] == category)
                 and (price_min is None or row[3] >= price_min) and (price_max is None or row[3] <= price_max))
    assert estimate is not None and estimate >= actual
    # an upper bound, but not a useless one (an unlisted category counts as rare as the rarest listed: 10%)
    assert estimate <= max(4 * actual, 0.15 * N)


@pytest.mark.commits
def test_broad_filter_goes_to_hnsw_without_counting_after_analyze(conn, catalog):
    conn.execute("update pgrecs.embedding_models set exact_scan_max_rows = 50")
    conn.commit()
    choose = ("select pgrecs.similarity_choose('default', true, %s, null, null, null, 50), "
              "pgrecs.similarity_filter_estimate(%s, null, null)")
    conn.execute("analyze pgrecs.items")
    strategy, estimate = conn.execute(choose, (["Music"], ["Music"])).fetchone()
    assert strategy == "hnsw" and estimate > 4 * 50  # decided from pg_stats alone
    strategy, estimate = conn.execute(choose, (["Books", "Fiction"], ["Books", "Fiction"])).fetchone()
    assert estimate <= 4 * 50 and strategy == "hnsw"  # counted: 59 active matches > 50
    conn.execute("update pgrecs.embedding_models set exact_scan_max_rows = 100")
    assert conn.execute("select pgrecs.similarity_strategy('{\"category\": \"Books > Fiction\"}')").fetchone()[0] == "exact"
    # an estimate at most cap goes to the exact scan without counting: pg_stats is the only input,
    # so a catalog that grew since ANALYZE still gets the right answer (slower, never wrong)
    assert conn.execute(choose, (["Books", "Fiction"], ["Books", "Fiction"])).fetchone()[1] <= 100
    # whatever the strategy, the answer is right: Music through HNSW with iterative scans
    query = catalog["vectors"][4]
    got = [r[0] for r in conn.execute("select item_id from recs.search_by_vector(%s, 10, '{\"category\": \"Music\"}')",
                                      (HalfVector(query),))]
    allowed = {int(catalog["ids"][j]) for j in range(N) if catalog["rows"][j][2] == ["Music"] and active(catalog, j)}
    assert len(got) == 10 and set(got) <= allowed
    assert len(set(got) & set(exact(catalog, query, 10, lambda j: int(catalog["ids"][j]) in allowed))) >= 9


def test_retrieval_helpers_are_not_volatile(conn):
    rows = dict(conn.execute(
        "select p.proname, p.provolatile from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
        "where n.nspname = 'pgrecs' and p.proname in ('semantic_search', 'similarity_choose', "
        "'similarity_filter_estimate', 'similarity_filter_count', 'similarity_strategy', 'similarity_filter_matches')"
    ).fetchall())
    assert rows == {"semantic_search": "s", "similarity_choose": "s", "similarity_filter_estimate": "s",
                    "similarity_filter_count": "s", "similarity_strategy": "s"}


@pytest.mark.commits
def test_inactive_and_deleted_never_returned(conn, catalog):
    inactive = {int(catalog["ids"][j]) for j in range(N) if not active(catalog, j)}
    victim = int(catalog["ids"][1])
    conn.execute("delete from pgrecs.items where item_id = %s", (victim,))
    conn.commit()
    for j in (2, 7, 57):
        got = {r[0] for r in conn.execute("select item_id from recs.search_by_vector(%s, 100)",
                                          (HalfVector(catalog["vectors"][j]),))}
        assert len(got) == 100 and not (got & inactive) and victim not in got
    # inactive items are never served: "active" is no filter (as for recommendations)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown filter: active"):
        conn.execute("select item_id from recs.search_by_vector(%s, 5, '{\"active\": false}')",
                     (HalfVector(catalog["vectors"][0]),))


def test_unknown_item_or_model(conn, catalog):
    # an unknown item is an error, with recs.recommend_for_item's code and wording
    for call in ("select * from recs.similar_items(-1)", "select * from recs.recommend_for_item(item => -1::bigint)"):
        with pytest.raises(psycopg.errors.NoDataFound) as raised:
            conn.execute(call)
        assert raised.value.diag.message_primary == "unknown item: -1"
        conn.rollback()
    # a known item without an embedding is no error: nothing to compare it with yet
    fresh = conn.execute("insert into pgrecs.items (external_id, title) values ('fresh', 'Fresh item')"
                         " returning item_id").fetchone()[0]
    assert conn.execute("select count(*) from recs.similar_items(%s)", (fresh,)).fetchone()[0] == 0
    with pytest.raises(psycopg.errors.NoDataFound, match="unknown embedding model"):
        conn.execute("select * from recs.similar_items(%s, 5, model => 'nope')", (int(catalog["ids"][0]),))


@pytest.mark.parametrize("filters,message", [
    ('{"colour": "red"}', "unknown filter"),
    ('{"price_min": "cheap"}', "filter price_min must be a number"),
    ('[1]', "JSON object"),
])
def test_bad_filters_rejected(conn, catalog, filters, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        conn.execute("select * from recs.similar_items(%s, 5, %s::jsonb)", (int(catalog["ids"][0]), filters))


def test_k_out_of_range(conn, catalog):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="k must be"):
        conn.execute("select * from recs.similar_items(%s, 0)", (int(catalog["ids"][0]),))


def test_tenant_isolation(conn, catalog):
    conn.execute("insert into pgrecs.tenants (tenant_id, name) values ('other', 'Other')")
    conn.execute("select set_config('pgrecs.tenant', 'other', false)")
    assert conn.execute("select count(*) from recs.search_by_vector(%s, 10)",
                        (HalfVector(catalog["vectors"][0]),)).fetchone()[0] == 0
    # the default tenant's item does not exist for the other tenant
    with pytest.raises(psycopg.errors.NoDataFound, match="unknown item"):
        conn.execute("select count(*) from recs.similar_items(%s, 10)", (int(catalog["ids"][0]),))


def test_hnsw_settings_do_not_leak(conn, catalog):
    conn.execute("load 'vector'")  # a fresh connection knows hnsw.* once pgvector's library is loaded
    before = conn.execute("select current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan')").fetchone()
    conn.execute("select * from recs.similar_items(%s, 50)", (int(catalog["ids"][0]),)).fetchall()
    after = conn.execute("select current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan')").fetchone()
    assert before == after


def test_hnsw_index_used_on_the_unfiltered_path(conn, catalog):
    plan = "\n".join(r[0] for r in conn.execute(
        "explain (costs off) select e.item_id from pgrecs.item_embeddings e where e.model_id = 1 "
        "order by e.embedding::halfvec(384) <=> %s::halfvec(384) limit 10", (HalfVector(catalog["vectors"][0]),)))
    assert "item_embeddings_hnsw_m1" in plan


def test_functions_commented_with_honest_volatility(conn):
    rows = conn.execute(
        """
        select p.proname, p.provolatile, obj_description(p.oid, 'pg_proc')
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'recs' and p.proname in ('similar_items', 'search_by_vector')
        """).fetchall()
    assert {r[0] for r in rows} == {"similar_items", "search_by_vector"}
    assert all(r[1] == "s" and r[2] for r in rows)
    writers = dict(conn.execute(
        "select p.proname, p.provolatile from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
        "where n.nspname = 'pgrecs' and p.proname in ('refresh_semantic_neighbors', 'remove_semantic_neighbors', "
        "'enqueue_stale_embeddings', 'item_text_sha256')").fetchall())
    assert writers == {"refresh_semantic_neighbors": "v", "remove_semantic_neighbors": "v",
                       "enqueue_stale_embeddings": "v", "item_text_sha256": "i"}


@pytest.mark.parametrize("filters,max_rows", [
    ({}, 0),  # the unfiltered HNSW statement
    ({"in_stock": True}, 0),  # filtered, through the index
    ({"in_stock": True}, 100000),  # filtered, exact scan
])
def test_equal_distances_are_cut_by_tie_key(conn, catalog, filters, max_rows):
    # five copies of one vector, loaded so that item_id order and tie_key order disagree: the two
    # kept at k = 2 are the two smallest tie keys, on every path
    conn.execute("update pgrecs.embedding_models set exact_scan_max_rows = %s", (max_rows,))
    query = np.zeros(384, dtype=np.float32)
    query[0] = 1.0
    names = [f"dup-{n}" for n in range(5)]
    with conn.cursor() as cur:
        cur.executemany("insert into pgrecs.items (external_id, title, stock) values (%s, %s, 5)",
                        [(n, n) for n in names])
        cur.executemany("insert into pgrecs.item_embeddings (item_id, model_id, embedding, text_sha256) "
                        "select item_id, 1, %s, '\\x00' from pgrecs.items where external_id = %s",
                        [(HalfVector(query), n) for n in names])
    by_tie_key = [r[0] for r in conn.execute(
        "select external_id from pgrecs.items where external_id like 'dup-%' order by tie_key")]
    by_item_id = [r[0] for r in conn.execute(
        "select external_id from pgrecs.items where external_id like 'dup-%' order by item_id")]
    assert by_tie_key[:2] != by_item_id[:2]  # the case is informative
    got = [r[0] for r in conn.execute("select external_id from recs.search_by_vector(%s, 2, %s::jsonb)",
                                      (HalfVector(query), json.dumps(filters)))]
    assert got == by_tie_key[:2]


@pytest.mark.commits
def test_lists_built_in_small_batches_keep_statistics_of_their_size(conn, catalog):
    """Batches too small for the bulk analyze (40 items): the writer analyzes the lists once they
    outgrow their statistics. With an empty table's statistics the re-ranking steps nested-loop
    every list against every candidate, and each batch took seconds more than the one before."""
    conn.execute("alter table pgrecs.item_neighbors set (autovacuum_enabled = false)")
    conn.commit()
    ids = [int(i) for i in catalog["ids"]]
    for start in range(0, len(ids), 40):
        conn.execute("select pgrecs.refresh_semantic_neighbors(%s, 20, true)", (ids[start:start + 40],))
        conn.commit()
    estimated = conn.execute(
        "select reltuples from pg_catalog.pg_class where oid = 'pgrecs.item_neighbors'::regclass").fetchone()[0]
    actual = conn.execute("select count(*) from pgrecs.item_neighbors").fetchone()[0]
    assert actual >= 20 * 500 and estimated >= 0.5 * actual, (estimated, actual)


@pytest.mark.commits
def test_two_list_writers_at_once_leave_every_list_whole(conn, catalog):
    """Two embed workers write lists at the same time (each its own batches, propagating into the
    other's lists): afterwards every active item's list holds n entries, ranked 1..n."""
    import threading

    from pgrecs.db import connect

    url = conn.info.dsn
    ids = [int(i) for i in catalog["ids"]]
    batches = [ids[start:start + 40] for start in range(0, len(ids), 40)]
    errors = []

    def writer(mine):
        try:
            with connect(url, tenant="default") as c:
                for batch in mine:
                    c.execute("select pgrecs.refresh_semantic_neighbors(%s, 20, true)", (batch,))
                    c.commit()
        except Exception as exc:  # surfaced below: a failed writer must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(batches[w::2],)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    lists = conn.execute(
        "select nb.item_id, count(*), array_agg(nb.rank order by nb.rank)"
        " from pgrecs.item_neighbors as nb join pgrecs.items as i on i.item_id = nb.item_id and i.active"
        " where nb.signal = 'semantic' group by nb.item_id").fetchall()
    actives = conn.execute("select count(*) from pgrecs.items where active").fetchone()[0]
    assert len(lists) == actives
    broken = [(item, size) for item, size, ranks in lists if size != 20 or ranks != list(range(1, 21))]
    assert broken == []
