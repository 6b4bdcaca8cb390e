"""Evaluation protocols. Each returns a Split: the training events (a boolean mask over the
interactions) and, per test user, the set of held-out relevant items.

Leakage rule: every derived table (co-occurrence, EASE, popularity, user histories) must be
built from `train` only; `Split.train_events` is exactly what gets loaded into the scratch
database, and `tests/test_evaluation_split.py` checks that no test event reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pgrecs.errors import PgrecsError
from pgrecs.evaluation.data import Interactions

# a user whose training history has fewer distinct items than this is in the new-user slice
NEW_USER_MAX_HISTORY = 2


@dataclass
class Split:
    protocol: str
    train_mask: np.ndarray                 # over the interactions
    test: dict[int, set[int]]              # user code -> relevant item codes
    cutoff: float | None = None
    stats: dict = field(default_factory=dict)

    def train(self, inter: Interactions) -> Interactions:
        return inter.subset(self.train_mask)

    def train_items_by_user(self, inter: Interactions) -> dict[int, set[int]]:
        out: dict[int, set[int]] = {}
        for u, i in zip(inter.user[self.train_mask], inter.item[self.train_mask]):
            out.setdefault(int(u), set()).add(int(i))
        return out

    def cold_items(self, inter: Interactions) -> set[int]:
        """Test items never seen in training (first seen in the test period)."""
        seen = set(np.unique(inter.item[self.train_mask]).tolist())
        return {i for items in self.test.values() for i in items} - seen

    def new_users(self, inter: Interactions) -> set[int]:
        history = self.train_items_by_user(inter)
        return {u for u in self.test if len(history.get(u, ())) <= NEW_USER_MAX_HISTORY}


def leave_last_out(inter: Interactions, min_items: int = 2) -> Split:
    """Per user with >= min_items distinct items: the latest interaction's item is the test item
    (ties on the timestamp broken by load order, event_id); every other event of that user on
    another item is training. Events of that user on the test item are dropped, not trained on,
    so the test item stays rankable and no test signal leaks."""
    order = np.lexsort((inter.event_id, inter.ts, inter.user))  # by user, time, load order
    users = inter.user[order]
    last_of_user = np.r_[users[1:] != users[:-1], True]
    train_mask = np.ones(len(inter), dtype=bool)
    test: dict[int, set[int]] = {}
    distinct = _distinct_items_per_user(inter)
    test_pairs: set[tuple[int, int]] = set()
    for idx in order[last_of_user]:
        u = int(inter.user[idx])
        if distinct.get(u, 0) >= min_items:
            i = int(inter.item[idx])
            test[u] = {i}
            test_pairs.add((u, i))
    if test_pairs:
        pairs = inter.user * (int(inter.item.max()) + 1) + inter.item
        held = np.array([u * (int(inter.item.max()) + 1) + i for u, i in test_pairs])
        train_mask &= ~np.isin(pairs, held)
    if not test:
        raise PgrecsError(f"no user has at least {min_items} distinct items: nothing to evaluate")
    return Split("leave-last-out", train_mask, test, stats=_stats(inter, train_mask, test))


def time_split(inter: Interactions, cutoff: float | None = None, quantile: float = 0.8,
               min_history: int = 1) -> Split:
    """Global time split: events before `cutoff` (epoch seconds; default the `quantile` of event
    times) train, events at or after it test. A test user needs >= min_history distinct training
    items (0 keeps brand-new users, the new-user slice); items already in the user's training
    history are not test targets."""
    if len(inter) == 0:
        raise PgrecsError("no interactions to split")
    if cutoff is None:
        cutoff = float(np.quantile(inter.ts, quantile))
    train_mask = inter.ts < cutoff
    history: dict[int, set[int]] = {}
    for u, i in zip(inter.user[train_mask], inter.item[train_mask]):
        history.setdefault(int(u), set()).add(int(i))
    test: dict[int, set[int]] = {}
    for u, i in zip(inter.user[~train_mask], inter.item[~train_mask]):
        u, i = int(u), int(i)
        seen = history.get(u, set())
        if len(seen) >= min_history and i not in seen:
            test.setdefault(u, set()).add(i)
    if not test:
        raise PgrecsError("the time split leaves no test user; move --cutoff or lower --min-history")
    stats = _stats(inter, train_mask, test) | {"min_history": min_history, "cutoff": cutoff}
    return Split("time-split", train_mask, test, cutoff=cutoff, stats=stats)


def validation_split(inter: Interactions, split: Split) -> tuple[Interactions, Split]:
    """The same protocol applied again inside the training part, so tuning never sees the test
    period: (training interactions, split of them into validation-train and validation)."""
    train = split.train(inter)
    if split.protocol == "leave-last-out":
        return train, leave_last_out(train)
    return train, time_split(train, quantile=0.8, min_history=split.stats.get("min_history", 1))


def _distinct_items_per_user(inter: Interactions) -> dict[int, int]:
    pairs = np.unique(np.stack([inter.user, inter.item]), axis=1)
    users, counts = np.unique(pairs[0], return_counts=True)
    return dict(zip(users.tolist(), counts.tolist()))


def _stats(inter: Interactions, train_mask: np.ndarray, test: dict[int, set[int]]) -> dict:
    return {
        "events": int(len(inter)),
        "train_events": int(train_mask.sum()),
        "test_users": len(test),
        "test_pairs": int(sum(len(v) for v in test.values())),
    }
