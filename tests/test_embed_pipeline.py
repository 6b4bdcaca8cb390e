"""The overlapped embedding path: chunks encoded while the previous chunk is written, several batches
with their neighbour lists written in the background; the result must equal the one-shot path's."""

from __future__ import annotations

import numpy as np

from pgrecs.embeddings import worker
from test_embeddings import ITEMS, add_items


def test_chunked_batches_store_what_plain_encode_gives(db_url, conn, minilm, monkeypatch):
    monkeypatch.setattr(worker, "WRITE_CHUNK", 2)  # 5 items: chunks of 2, 2, 1 within each batch
    long_text = "An extremely long description of a running shoe. " * 60
    add_items(conn, ITEMS + [("long", "Long shoe", long_text, "Asics", ["Shoes", "Running"], 90, 1)])
    stats = worker.drain(db_url, "default", batch_size=4, neighbors=3, progress=False)
    assert (stats.claimed, stats.embedded, stats.truncated) == (len(ITEMS) + 1, len(ITEMS) + 1, 1)
    assert stats.model_calls == 2 + 1  # batch 1: 4 texts in 2 chunks; batch 2: 2 texts in 1 chunk
    assert stats.neighbor_lists == len(ITEMS) + 1  # written by the background writer, all of them

    rows = conn.execute(
        "select i.external_id, pgrecs.compose_item_text(i.title, i.description, i.brand, i.category_path, i.attributes), "
        "e.embedding, e.truncated, e.text_sha256 = pgrecs.item_text_sha256("
        "pgrecs.compose_item_text(i.title, i.description, i.brand, i.category_path, i.attributes)) "
        "from pgrecs.items i join pgrecs.item_embeddings e using (item_id) order by i.item_id").fetchall()
    plain = minilm.model.encode([r[1] for r in rows], normalize_embeddings=True)
    for (external_id, _, vector, truncated, hash_ok), expected in zip(rows, plain):
        assert np.allclose(vector.to_numpy().astype(np.float32), expected, atol=2e-3), external_id
        assert truncated == (external_id == "long") and hash_ok
    # every list full (3 neighbours, the other items), none left queued
    sizes = conn.execute("select count(*) from pgrecs.item_neighbors where signal = 'semantic' "
                         "group by item_id").fetchall()
    assert sorted(s[0] for s in sizes) == [3] * (len(ITEMS) + 1)
    assert conn.execute("select count(*) from pgrecs.embedding_queue").fetchone()[0] == 0
    assert worker.drain(db_url, "default", batch_size=4, neighbors=3, progress=False).model_calls == 0
