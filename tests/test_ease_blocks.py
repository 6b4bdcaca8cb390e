"""EASE by blocks against dense EASE on hand-made catalogs where the dense solution is known, and
the atomic replacement of the published lists while recommendations are served."""

from __future__ import annotations

import threading

import numpy as np
import psycopg
import pytest
from scipy import sparse

from pgrecs.signals import ease_blocks
from pgrecs.signals.ease import EaseNeighbors, ease_from_pairs, top_neighbors
from test_signals_ease import direct_ease


def clustered_catalog(seed=0, clusters=3, size=10, users=240):
    """Users who mostly stay inside one of `clusters` groups of `size` items (one item in ten
    from anywhere): the structure the partition should find."""
    rng = np.random.default_rng(seed)
    x = np.zeros((users, clusters * size))
    for u in range(users):
        home = u % clusters
        for _ in range(rng.integers(3, 7)):
            group = home if rng.random() < 0.9 else rng.integers(clusters)
            x[u, group * size + rng.integers(size)] = 1.0
    return x


def lists(nb: EaseNeighbors) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for anchor, neighbor in zip(nb.item_ids.tolist(), nb.neighbor_ids.tolist()):
        out.setdefault(anchor, []).append(neighbor)
    return out


@pytest.mark.parametrize("block_size, halo_size", [(30, 0), (10, 20), (7, 30)])
def test_blocks_with_complete_halos_are_dense_ease(block_size, halo_size):
    """Where one block holds the catalog, or every halo holds all other items, each item's
    regression has every other item as a predictor: dense EASE exactly."""
    x = clustered_catalog()
    ids = np.arange(500, 500 + x.shape[1])
    dense = top_neighbors(direct_ease(x, 30.0), ids, 8, tie_keys=ids)
    blocks = ease_blocks.fit(sparse.csr_matrix(x), ids, ease_blocks.BlockParams(
        lam=30.0, block_size=block_size, halo_size=halo_size, top_n=8), tie_keys=ids)
    np.testing.assert_array_equal(blocks.item_ids, dense.item_ids)
    np.testing.assert_array_equal(blocks.neighbor_ids, dense.neighbor_ids)
    np.testing.assert_array_equal(blocks.ranks, dense.ranks)
    np.testing.assert_allclose(blocks.scores, dense.scores, rtol=1e-3, atol=1e-6)


def test_partition_finds_the_clusters():
    x = clustered_catalog()
    graph = ease_blocks.item_graph(sparse.csr_matrix(x), k=5)
    parts = ease_blocks.partition(graph, 3)
    assert sorted(len(set(parts[g * 10:(g + 1) * 10])) for g in range(3)) == [1, 1, 1]
    assert len(set(parts)) == 3


def test_blocks_without_full_halos_keep_the_strong_neighbours():
    """Blocks of one cluster with a halo of 5: each item loses most cross-cluster predictors;
    its strongest neighbours (inside its cluster) stay, with scores close to dense EASE's."""
    x = clustered_catalog()
    ids = np.arange(x.shape[1])
    b = direct_ease(x, 30.0)
    dense = lists(top_neighbors(b, ids, 3, tie_keys=ids))
    blocks = ease_blocks.fit(sparse.csr_matrix(x), ids, ease_blocks.BlockParams(
        lam=30.0, block_size=10, halo_size=5, top_n=3), tie_keys=ids)
    got = lists(blocks)
    overlap = np.mean([len(set(dense[i]) & set(got.get(i, []))) / len(dense[i]) for i in dense])
    assert overlap >= 0.9
    for item, neighbors in got.items():
        for rank, neighbor in enumerate(neighbors):
            score = blocks.scores[(blocks.item_ids == item) & (blocks.neighbor_ids == neighbor)][0]
            assert score == pytest.approx(b[item, neighbor], rel=0.25)


def test_side_information_matches_dense_and_reaches_an_item_without_interactions():
    """Item 30 has no interactions, only an embedding close to item 3's: both solvers give it
    a list, the same one, when the halos are complete."""
    x = clustered_catalog()
    users, items = np.nonzero(x)
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(31, 6))
    embeddings[30] = embeddings[3] + 0.01
    embedded_ids = np.arange(31)
    dense = ease_from_pairs(users, items, lam=30.0, top_n=5, embedded_item_ids=embedded_ids,
                            embeddings=embeddings.astype(np.float32), semantic_weight=10.0,
                            tie_keys_of=lambda ids: ids)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    xs = sparse.csr_matrix((np.ones(len(items), dtype=np.float32), (users, items)), shape=(x.shape[0], 31))
    blocks = ease_blocks.fit(xs, embedded_ids, ease_blocks.BlockParams(
        lam=30.0, side_weight=10.0, block_size=8, halo_size=31, top_n=5), tie_keys=embedded_ids,
        side=unit.astype(np.float32))
    assert lists(blocks) == lists(dense)
    assert lists(blocks)[30][0] == 3
    np.testing.assert_allclose(blocks.scores, dense.scores, rtol=1e-3, atol=1e-6)


def test_memory_estimate_grows_with_the_catalog_not_its_square():
    params = ease_blocks.BlockParams()
    small = ease_blocks.estimate_bytes(100_000, 1_000_000, 10**8, 384, params)
    large = ease_blocks.estimate_bytes(1_000_000, 10_000_000, 10**9, 384, params)
    assert large < 12 * small  # ten times the catalog: about ten times the memory
    from pgrecs.signals.ease import dense_bytes

    assert dense_bytes(1_000_000, 10_000_000, 384) > 1000 * large


# --- atomic replacement while recommendations are served ----------------------------------------

def test_lists_are_replaced_atomically_while_recommendations_are_served(db_url):
    """A reader keeps asking for item A's recommendations (placement over EASE) and counting the
    published EASE rows while a writer replaces them, again and again, between two versions of
    different sizes through the publishing path of `pgrecs refresh --cf`: every read sees one
    version whole."""
    import scoring_world
    from pgrecs.signals.refresh import _copy_neighbors

    from pgrecs.db import connect

    with connect(db_url) as conn:
        ids = scoring_world.build(conn)
    anchors = np.array([ids[a] for a in "ABCDEFGJ"], dtype=np.int64)
    versions = []
    for size in (3, 7):
        rng = np.random.default_rng(size)
        rows = [(a, n) for a in anchors for n in rng.choice([v for v in anchors if v != a], size=size, replace=False)]
        versions.append(EaseNeighbors(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                                      np.linspace(1.0, 0.1, len(rows), dtype=np.float32),
                                      np.tile(np.arange(1, size + 1), len(anchors))))
    sizes = {len(v.item_ids) for v in versions}
    seen_sizes, failures, stop = set(), [], threading.Event()

    def reader():
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("select set_config('pgrecs.tenant', 'default', false)")
            while not stop.is_set():
                count, listed = conn.execute(
                    "select (select count(*) from pgrecs.item_neighbors where tenant_id = 'default' and signal = 'ease'),"
                    " (select count(*) from recs.recommend_for_item(item => %s, k => 20, placement => 'pdp_similar'))",
                    (int(ids["A"]),)).fetchone()
                seen_sizes.add(count)
                if count not in sizes or listed == 0:
                    failures.append((count, listed))

    with psycopg.connect(db_url) as conn:
        conn.execute("select set_config('pgrecs.tenant', 'default', false)")
        _copy_neighbors(conn, "ease_neighbors", {"default": versions[0]})
        conn.execute("select * from pgrecs.replace_signal_lists('ease')")
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(40):
            with psycopg.connect(db_url) as conn:
                _copy_neighbors(conn, "ease_neighbors", {"default": versions[(i + 1) % 2]})
                written = conn.execute("select list_rows from pgrecs.replace_signal_lists('ease')").fetchall()
                assert written == [(len(versions[(i + 1) % 2].item_ids),)]
    finally:
        stop.set()
        thread.join()
    assert not failures
    assert seen_sizes == sizes  # the reader saw both versions, never a mix


def test_cf_refresh_before_any_refresh_is_one_clear_line(cli):
    result = cli("refresh", "--cf")
    assert result.exit_code == 1
    assert result.output.strip() == "error: no refresh has run yet: run `pgrecs refresh` first (it builds the interaction matrix)"
