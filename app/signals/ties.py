"""Score ties in the neighbour lists computed in Python, broken as the SQL breaks them.

Every ranking orders equal scores by `pgrecs.items.tie_key` (the first 64 bits of
md5(external_id)), never by item id: ids follow load order. The lists fitted here (co-occurrence,
EASE dense and by blocks) cut their top N the same way, so which of several equally scored
neighbours makes a list does not depend on the order the catalogue was loaded in.
"""

from __future__ import annotations

import numpy as np

_LOW = np.int64(0xFFFFFFFF)


def read_tie_keys(conn, item_ids: np.ndarray) -> np.ndarray:
    """`pgrecs.items.tie_key` of each id, aligned with `item_ids` (an id no longer in the catalogue
    gets the largest key, so it loses every tie)."""
    rows = conn.execute(
        "select coalesce(i.tie_key, 9223372036854775807) from unnest(%s::bigint[]) with ordinality as u(item_id, ord)"
        " left join pgrecs.items as i on i.item_id = u.item_id order by u.ord",
        ([int(i) for i in item_ids],)).fetchall()
    return np.array([r[0] for r in rows], dtype=np.int64)


def order_keys(scores: np.ndarray, tie_keys: np.ndarray) -> np.ndarray:
    """One int64 per entry that sorts like (score descending, tie key ascending) when sorted
    descending: the float32 score's order-preserving bits above, the complement of the tie key's
    upper 32 bits below. Lets argpartition cut a top N by both at once; keys that share their
    upper 32 bits (about one pair in four billion) stay tied."""
    bits = np.ascontiguousarray(scores, dtype=np.float32).view(np.int32).astype(np.int64)
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    upper = (np.asarray(tie_keys, dtype=np.int64) >> 32) + np.int64(2**31)
    return (ordered << 32) + (_LOW - upper)


def top_k(scores: np.ndarray, tie_keys: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k best entries, best first, by (score desc, tie key asc);
    `tie_keys` broadcasts against `scores` (one key per column, or one per entry)."""
    tie_keys = np.broadcast_to(tie_keys, scores.shape)
    n = scores.shape[1]
    if k < n:
        keys = order_keys(scores, tie_keys)
        cand = np.argpartition(keys, n - k, axis=1)[:, n - k:]
    else:
        cand = np.tile(np.arange(n), (len(scores), 1))
    order = np.lexsort((np.take_along_axis(tie_keys, cand, axis=1), -np.take_along_axis(scores, cand, axis=1)), axis=1)
    return np.take_along_axis(cand, order, axis=1)
