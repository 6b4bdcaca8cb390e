"""The filter columns copied onto pgrecs.item_embeddings (migration 0007), the generated static
unfiltered path of pgrecs.semantic_search, and hot-filter partial HNSW indexes.

Synthetic normalised vectors (as in test_semantic_sql.py): the exact answer is known from numpy.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from pgvector import HalfVector

N = 400


@pytest.fixture
def catalog(conn):
    rng = np.random.default_rng(11)
    centers = rng.normal(size=(6, 384))
    vectors = centers[rng.integers(0, 6, N)] + 0.6 * rng.normal(size=(N, 384))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16).astype(np.float32)
    rows = [(f"f{i}", f"Item {i}", ["Toys", "Lego"] if i % 8 == 0 else ["Garden"], float(i % 50), i % 5)
            for i in range(N)]
    with conn.cursor() as cur:
        cur.executemany("insert into pgrecs.items (external_id, title, category_path, price, stock) "
                        "values (%s, %s, %s, %s, %s)", rows)
    ids = [r[0] for r in conn.execute("select item_id from pgrecs.items order by item_id")]
    with conn.cursor() as cur:
        cur.executemany("insert into pgrecs.item_embeddings (item_id, model_id, embedding, text_sha256) "
                        "values (%s, 1, %s, '\\x00')", [(i, HalfVector(v)) for i, v in zip(ids, vectors)])
    conn.execute("delete from pgrecs.embedding_queue")
    conn.commit()
    return {"ids": np.array(ids), "vectors": vectors, "rows": rows}


def _copies(conn, item_id):
    return conn.execute("select active, category_path, price::float8, in_stock from pgrecs.item_embeddings "
                        "where item_id = %s and model_id = 1", (item_id,)).fetchone()


def test_filter_columns_copied_on_insert_and_kept_in_step(conn, catalog):
    first = int(catalog["ids"][1])
    assert _copies(conn, first) == (True, ["Garden"], 1.0, True)
    assert _copies(conn, int(catalog["ids"][0])) == (True, ["Toys", "Lego"], 0.0, False)  # stock 0
    conn.execute("update pgrecs.items set category_path = '{Toys}', price = 7.5, stock = 0 where item_id = %s",
                 (first,))
    assert _copies(conn, first) == (True, ["Toys"], 7.5, False)
    conn.execute("update pgrecs.items set active = false, stock = null where item_id = %s", (first,))
    assert _copies(conn, first) == (False, ["Toys"], 7.5, True)  # null stock counts as in stock
    # an unrelated update leaves the embedding row alone (no dead tuple, no HNSW insert)
    xmin = conn.execute("select xmin::text from pgrecs.item_embeddings where item_id = %s", (first,)).fetchone()
    conn.commit()
    conn.execute("update pgrecs.items set title = 'renamed' where item_id = %s", (first,))
    assert conn.execute("select xmin::text from pgrecs.item_embeddings where item_id = %s", (first,)).fetchone() == xmin


def test_filters_read_the_copies(conn, catalog):
    toy = int(catalog["ids"][8])
    conn.execute("update pgrecs.items set category_path = '{Garden}' where item_id = %s", (toy,))
    got = {r[0] for r in conn.execute(
        "select item_id from recs.similar_items(%s, 100, '{\"category\": \"Toys > Lego\"}')",
        (int(catalog["ids"][0]),))}
    assert toy not in got and len(got) == N // 8 - 2  # all other Lego items, not the moved one


def _index_scans(conn, name):
    # scans of an index in the current transaction (no stats flush needed)
    return conn.execute("select pg_stat_get_xact_numscans(to_regclass('pgrecs.' || %s))", (name,)).fetchone()[0]


def test_unfiltered_path_is_static_and_uses_the_model_index(conn, catalog):
    q = int(catalog["ids"][3])
    before = _index_scans(conn, "item_embeddings_hnsw_m1")
    for _ in range(3):
        got = [r[0] for r in conn.execute("select item_id from recs.similar_items(%s, 10)", (q,))]
    assert _index_scans(conn, "item_embeddings_hnsw_m1") >= before + 3
    sims = catalog["vectors"] @ catalog["vectors"][3]
    sims[3] = -9
    truth = {int(catalog["ids"][j]) for j in np.argsort(-sims)[:10]}
    assert len(set(got) & truth) >= 9
    # the generated function holds one static branch per model (no EXECUTE on that path)
    body = conn.execute("select prosrc from pg_proc where oid = 'pgrecs.semantic_search'::regproc").fetchone()[0]
    assert "elsif model_id = 1 then" in body and "embedding::halfvec(384)" in body


def test_registered_model_gets_its_branch(conn, catalog):
    conn.execute("insert into pgrecs.embedding_models (name, version, dimensions, source) "
                 "values ('tiny', 'x', 8, '/nowhere')")
    model_id = conn.execute("select model_id from pgrecs.embedding_models where name = 'tiny'").fetchone()[0]
    conn.execute("select pgrecs.ensure_model_index(%s::smallint)", (model_id,))
    body = conn.execute("select prosrc from pg_proc where oid = 'pgrecs.semantic_search'::regproc").fetchone()[0]
    assert f"elsif model_id = {model_id} then" in body and "embedding::halfvec(8)" in body
    ids = [int(i) for i in catalog["ids"][:5]]
    with conn.cursor() as cur:
        cur.executemany("insert into pgrecs.item_embeddings (item_id, model_id, embedding, text_sha256) "
                        "values (%s, %s, %s, '\\x00')",
                        [(i, model_id, HalfVector(np.eye(8)[j] + 0.1)) for j, i in enumerate(ids)])
    got = [r[0] for r in conn.execute("select external_id from recs.similar_items(%s, 2, model => 'tiny')",
                                      (ids[0],))]
    assert len(got) == 2 and "f0" not in got


def test_hot_filter_index_is_used_and_exact(conn, catalog):
    name = conn.execute("select pgrecs.ensure_filter_index(1::smallint, array['Toys', 'Lego'])").fetchone()[0]
    assert conn.execute("select pgrecs.ensure_filter_index(1::smallint, array['Toys', 'Lego'])").fetchone()[0] == name
    conn.commit()
    q = int(catalog["ids"][5])
    before = _index_scans(conn, name)
    got = [r[0] for r in conn.execute(
        "select item_id from recs.similar_items(%s, 10, '{\"category\": [\"Toys\", \"Lego\"]}')", (q,))]
    assert _index_scans(conn, name) == before + 1
    lego = [j for j in range(N) if j % 8 == 0]
    sims = catalog["vectors"][lego] @ catalog["vectors"][5]
    truth = {int(catalog["ids"][lego[j]]) for j in np.argsort(-sims)[:10]}
    assert len(set(got) & truth) >= 9 and len(got) == 10
    # other filters still apply on top of the partial index
    cheap = [r[0] for r in conn.execute(
        "select item_id from recs.similar_items(%s, 10, '{\"category\": \"Toys > Lego\", \"price_max\": 20}')", (q,))]
    prices = dict(conn.execute("select item_id, price from pgrecs.items where item_id = any(%s)", (cheap,)).fetchall())
    assert cheap and all(p <= 20 for p in prices.values())
    # so do the keys the similarity side took over from recommendations (exclude, brands), still on the index
    before = _index_scans(conn, name)
    kept = [r[0] for r in conn.execute(
        "select item_id from recs.similar_items(%s, 10, %s::jsonb)", (q, json.dumps({"category": "Toys > Lego", "exclude": got[:3]})))]
    assert _index_scans(conn, name) == before + 1 and len(kept) == 10 and not set(kept) & set(got[:3])
    with pytest.raises(Exception, match="category prefix"):
        conn.execute("select pgrecs.ensure_filter_index(1::smallint, '{}')")


def test_mid_sized_categories_get_their_own_index(conn, catalog):
    """Between exact-scan size and max_share of the catalog: a partial index per category prefix
    (here Toys and Toys > Lego, 50 of 400 items each); the big Garden category keeps the main index."""
    conn.execute("update pgrecs.embedding_models set exact_scan_max_rows = 20 where model_id = 1")
    made = conn.execute("select pgrecs.ensure_category_filter_indexes(1::smallint, 0.2, 2)").fetchone()[0]
    expected = [conn.execute("select pgrecs.filter_index_name(1::smallint, %s)", (c,)).fetchone()[0]
                for c in (["Toys"], ["Toys", "Lego"])]
    assert ["pgrecs." + name for name in made] == expected
    assert all(conn.execute("select to_regclass(%s) is not null", (name,)).fetchone()[0] for name in expected)
    garden = conn.execute("select pgrecs.filter_index_name(1::smallint, array['Garden'])").fetchone()[0]
    assert conn.execute("select to_regclass(%s)", (garden,)).fetchone()[0] is None
    # idempotent; one level only: Toys alone; above exact-scan size only: nothing
    assert conn.execute("select pgrecs.ensure_category_filter_indexes(1::smallint, 0.2, 2)").fetchone()[0] == made
    assert conn.execute("select pgrecs.ensure_category_filter_indexes(1::smallint, 0.2, 1)").fetchone()[0] == made[:1]
    conn.execute("update pgrecs.embedding_models set exact_scan_max_rows = 50 where model_id = 1")
    assert conn.execute("select pgrecs.ensure_category_filter_indexes(1::smallint, 0.2, 2)").fetchone()[0] == []
