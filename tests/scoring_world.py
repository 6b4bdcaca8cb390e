"""A small, hand-made catalog with known neighbour scores, signals and embeddings.

Scoring tests insert these rows directly (no embedding or dbt pipeline), so every expected
score, position and reason can be written down exactly.
"""

from __future__ import annotations

import numpy as np
import psycopg
from pgvector import HalfVector

# external_id: (title, brand, category_path, price, stock, active, margin)
ITEMS = {
    "A": ("Alpha runner", "Acme", ["Shoes", "Running"], 100, 5, True, 0.30),
    "B": ("Bravo runner", "Acme", ["Shoes", "Running"], 80, 5, True, 0.20),
    "C": ("Charlie runner", "Bolt", ["Shoes", "Running"], 90, 5, True, 0.10),
    "D": ("Delta trail", "Bolt", ["Shoes", "Trail"], 120, 5, True, 0.10),
    "E": ("Echo trail", "Acme", ["Shoes", "Trail"], 60, 5, True, 0.50),
    "F": ("Foxtrot socks", "Cusp", ["Apparel", "Socks"], 10, 5, True, 0.40),
    "G": ("Golf shirt", "Cusp", ["Apparel", "Shirts"], 30, 5, True, 0.10),
    "H": ("Hotel runner", "Dart", ["Shoes", "Running"], 200, 0, True, 0.10),   # out of stock
    "I": ("India runner", "Dart", ["Shoes", "Running"], 50, 5, False, 0.10),   # inactive
    "J": ("Juliet socks", "Acme", ["Apparel", "Socks"], 12, 5, True, 0.10),
    "N": ("November runner", "Bolt", ["Shoes", "Running"], 95, 5, True, 0.10),  # new: no events
    "P": ("Papa cap", "Zed", ["Apparel", "Caps"], 20, 5, True, 0.10),           # the most popular
}

# signal -> anchor -> [(neighbour, score)], ranks in list order
NEIGHBORS = {
    "semantic": {
        "A": [("I", 0.95), ("B", 0.9), ("H", 0.85), ("C", 0.8), ("N", 0.7), ("E", 0.5)],
        "D": [("C", 0.9), ("E", 0.6)],
        "N": [("A", 0.7), ("C", 0.6)],
        "F": [("J", 0.9)],
    },
    "cooccurrence": {
        "A": [("F", 0.6), ("C", 0.4), ("J", 0.3)],
    },
    "ease": {
        "A": [("G", 0.5), ("B", 0.2)],
    },
}

POPULARITY = {"P": 100.0, "F": 50.0, "B": 10.0, "C": 8.0, "G": 5.0, "J": 4.0, "E": 2.0, "A": 20.0, "D": 1.0}

# 3-d embeddings: B and C nearly the same direction, N and E orthogonal to them
EMBEDDINGS = {
    "A": [1.0, 0.1, 0.0],
    "B": [1.0, 0.0, 0.0],
    "C": [0.99, 0.14, 0.0],
    "N": [0.0, 1.0, 0.0],
    "E": [0.0, 0.0, 1.0],
}


def build(conn: psycopg.Connection) -> dict[str, int]:
    """Insert the world; return external_id -> item_id."""
    ids: dict[str, int] = {}
    for ext, (title, brand, cats, price, stock, active, margin) in ITEMS.items():
        ids[ext] = conn.execute(
            "insert into pgrecs.items (external_id, title, brand, category_path, price, stock, active, margin)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s) returning item_id",
            (ext, title, brand, cats, price, stock, active, margin),
        ).fetchone()[0]
    for signal, lists in NEIGHBORS.items():
        for anchor, neighbours in lists.items():
            for rank, (nb, score) in enumerate(neighbours, start=1):
                conn.execute(
                    "insert into pgrecs.item_neighbors (signal, item_id, neighbor_item_id, score, rank)"
                    " values (%s, %s, %s, %s, %s)",
                    (signal, ids[anchor], ids[nb], score, rank),
                )
    # percentile as the popularity mart defines it: the share of the catalog's items more popular
    for ext, pop in POPULARITY.items():
        above = sum(other > pop for other in POPULARITY.values())
        conn.execute(
            "insert into pgrecs.item_signals (item_id, popularity, trending, quality_score, popularity_percentile)"
            " values (%s, %s, 0, 0.9, %s)",
            (ids[ext], pop, above / len(ITEMS)),
        )
    model_id = conn.execute(
        "insert into pgrecs.embedding_models (name, version, dimensions, source, is_default)"
        " values ('test-3d', '1', 3, 'test', false) returning model_id"
    ).fetchone()[0]
    for ext, vec in EMBEDDINGS.items():
        v = np.asarray(vec, dtype=np.float32)
        v = v / np.linalg.norm(v)
        conn.execute(
            "insert into pgrecs.item_embeddings (item_id, model_id, embedding, text_sha256)"
            " values (%s, %s, %s, '\\x00')",
            (ids[ext], model_id, HalfVector(v)),
        )
    # a plain placement the tests reshape: semantic only, no diversity, no caps, in-stock only
    conn.execute(
        "insert into pgrecs.placements (placement, weights, pool_sizes, default_filters, model_id)"
        " values ('t', '{\"semantic\": 1}', '{}', '{\"in_stock\": true}', %s)",
        (model_id,),
    )
    # the seeded placements diversify with this model too
    conn.execute("update pgrecs.placements set model_id = %s", (model_id,))
    conn.commit()
    return ids


def add_user(conn: psycopg.Connection, external_id: str) -> int:
    return conn.execute(
        "insert into pgrecs.users (external_id) values (%s) returning user_id", (external_id,)
    ).fetchone()[0]


def add_event(conn: psycopg.Connection, user_id: int, item_id: int, event_type: str, ago: str = "1 hour") -> None:
    conn.execute(
        "insert into pgrecs.events (user_id, item_id, event_type, occurred_at, dedup_key)"
        " values (%s, %s, %s, now() - %s::interval, gen_random_uuid())",
        (user_id, item_id, event_type, ago),
    )
