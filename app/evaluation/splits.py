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
    test: dict[int, set[int]]              # user code -> relevant item codes the user never had
    cutoff: float | None = None
    stats: dict = field(default_factory=dict)
    # user code -> held-out items the user already had in training (unreachable while rankings
    # leave the history out; reported as their own slice, not counted in the main metrics)
    repeat: dict[int, set[int]] = field(default_factory=dict)
    # items a ranking may return (bool over item codes); None: the whole catalogue
    candidates: np.ndarray | None = None

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


def last_tie_groups(inter: Interactions) -> np.ndarray:
    """Whether each event belongs to its user's last tie group: every event at the user's latest
    timestamp, and, where events carry a session (basket, invoice) id, every event of the
    sessions those events belong to. The order of rows plays no part."""
    n_users = int(inter.user.max()) + 1 if len(inter) else 0
    latest = np.full(n_users, -np.inf)
    np.maximum.at(latest, inter.user, inter.ts)
    last = inter.ts == latest[inter.user]
    if inter.session is not None:
        has = np.array([s is not None for s in inter.session], dtype=bool)
        last_sessions = {(int(u), s) for u, s, h in zip(inter.user[last], inter.session[last], has[last]) if h}
        if last_sessions:
            last |= np.array([h and (int(u), s) in last_sessions
                              for u, s, h in zip(inter.user, inter.session, has)], dtype=bool)
    return last


def leave_last_out(inter: Interactions, min_history: int = 1) -> Split:
    """Per user, the whole last tie group (`last_tie_groups`) is held out, and the history is every
    event strictly earlier than the group's first timestamp (events of the user from that moment
    on that are not in the group are neither trained on nor tested). A user is a test user with
    at least min_history distinct history items and a held-out item not in that history; held-out
    items already in the history are the repeat targets. Users without history train with all
    their events."""
    if len(inter) == 0:
        raise PgrecsError("no interactions to split")
    last = last_tie_groups(inter)
    n_users = int(inter.user.max()) + 1
    group_start = np.full(n_users, np.inf)
    np.minimum.at(group_start, inter.user[last], inter.ts[last])
    earlier = inter.ts < group_start[inter.user]
    history: dict[int, set[int]] = {}
    for u, i in zip(inter.user[earlier], inter.item[earlier]):
        history.setdefault(int(u), set()).add(int(i))
    held: dict[int, set[int]] = {}
    for u, i in zip(inter.user[last], inter.item[last]):
        held.setdefault(int(u), set()).add(int(i))
    test: dict[int, set[int]] = {}
    repeat: dict[int, set[int]] = {}
    for u, items in held.items():
        seen = history.get(u, set())
        if len(seen) < max(min_history, 1):
            continue
        if items - seen:
            test[u] = items - seen
        if items & seen:
            repeat[u] = items & seen
    if not test:
        raise PgrecsError("no user has a history before a last tie group with a new item: nothing to evaluate")
    tested = np.zeros(n_users, dtype=bool)
    tested[list(set(test) | set(repeat))] = True
    train_mask = np.where(tested[inter.user], earlier, True)
    stats = _stats(inter, train_mask, test, repeat) | {"min_history": max(min_history, 1)}
    return Split("leave-last-out", train_mask, test, stats=stats, repeat=repeat)


def time_split(inter: Interactions, cutoff: float | None = None, quantile: float = 0.8,
               min_history: int = 1, n_items: int | None = None, cold_targets: bool = False) -> Split:
    """Global time split: events before `cutoff` (epoch seconds; default the `quantile` of event
    times) train, events at or after it test, so a tie at the cut-off is never split. Rankings
    choose among the items known at the cut-off (with a training event); a test user needs
    >= min_history distinct training items (0 keeps brand-new users, the new-user slice). Test
    targets are known items the user never had; test items the user had are the repeat targets,
    and items first seen after the cut-off are counted (`cold_test_pairs`), not targeted.
    cold_targets=True targets them too and ranks the whole catalogue: for comparing text models,
    whose semantic signal reaches an item without events (the cold-start slice)."""
    if len(inter) == 0:
        raise PgrecsError("no interactions to split")
    if cutoff is None:
        cutoff = float(np.quantile(inter.ts, quantile))
    train_mask = inter.ts < cutoff
    n_items = max(n_items or 0, int(inter.item.max()) + 1)
    known = np.zeros(n_items, dtype=bool)
    known[inter.item[train_mask]] = True
    history: dict[int, set[int]] = {}
    for u, i in zip(inter.user[train_mask], inter.item[train_mask]):
        history.setdefault(int(u), set()).add(int(i))
    test: dict[int, set[int]] = {}
    repeat: dict[int, set[int]] = {}
    cold: set[tuple[int, int]] = set()
    for u, i in zip(inter.user[~train_mask], inter.item[~train_mask]):
        u, i = int(u), int(i)
        seen = history.get(u, set())
        if len(seen) < min_history:
            continue
        if i in seen:
            repeat.setdefault(u, set()).add(i)
        elif known[i] or cold_targets:
            test.setdefault(u, set()).add(i)
        else:
            cold.add((u, i))
    if not test:
        raise PgrecsError("the time split leaves no test user; move --cutoff or lower --min-history")
    stats = _stats(inter, train_mask, test, repeat) | {"min_history": min_history, "cutoff": cutoff,
                                                        "cold_test_pairs": len(cold),
                                                        "known_items": int(known.sum())}
    return Split("time-split", train_mask, test, cutoff=cutoff, stats=stats, repeat=repeat,
                 candidates=None if cold_targets else known)


def validation_split(inter: Interactions, split: Split) -> tuple[Interactions, Split]:
    """The same protocol applied again inside the training part, so tuning never sees the test
    period: (training interactions, split of them into validation-train and validation)."""
    train = split.train(inter)
    if split.protocol == "leave-last-out":
        return train, leave_last_out(train, min_history=split.stats.get("min_history", 1))
    return train, time_split(train, quantile=0.8, min_history=split.stats.get("min_history", 1),
                             n_items=None if split.candidates is None else len(split.candidates))


def _stats(inter: Interactions, train_mask: np.ndarray, test: dict[int, set[int]],
           repeat: dict[int, set[int]]) -> dict:
    return {
        "events": int(len(inter)),
        "train_events": int(train_mask.sum()),
        "test_users": len(test),
        "test_pairs": int(sum(len(v) for v in test.values())),
        "repeat_users": len(repeat),
        "repeat_pairs": int(sum(len(v) for v in repeat.values())),
        "repeat_only_users": len(set(repeat) - set(test)),
    }
