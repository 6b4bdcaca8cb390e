"""Tie groups of an event log: the rows of one user at one timestamp.

Coarse timestamps put many events of a user at one moment (every line of an invoice, a day of
reviews). The order of those rows in a file says nothing about the user, so an honest evaluation
gives the same result whatever it is. `shuffle_ties` writes the same events with the rows inside
each (user, timestamp) group permuted, each group keeping the file positions it occupied, so
loading the copy changes nothing but the order inside ties:

    python -m pgrecs.evaluation.ties shuffle events.jsonl.gz shuffled.jsonl.gz [--seed 1]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from collections import defaultdict
from pathlib import Path


def shuffle_ties(records: list[dict], seed: int = 1) -> list[dict]:
    """The records with the rows of each (user_id, occurred_at) group permuted among the
    positions that group holds; every other row stays where it is."""
    positions: dict[tuple, list[int]] = defaultdict(list)
    for pos, rec in enumerate(records):
        positions[(rec.get("user_id"), rec.get("occurred_at"))].append(pos)
    rng = random.Random(seed)
    out = list(records)
    for key in sorted(positions, key=lambda k: positions[k][0]):
        slots = positions[key]
        if len(slots) > 1:
            moved = slots[:]
            rng.shuffle(moved)
            for dst, src in zip(slots, moved):
                out[dst] = records[src]
    return out


def _read(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _write(records: list[dict], path: Path) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pgrecs.evaluation.ties")
    sub = parser.add_subparsers(dest="command", required=True)
    shuffle = sub.add_parser("shuffle", help="permute the rows inside each (user, timestamp) group")
    shuffle.add_argument("source", type=Path)
    shuffle.add_argument("target", type=Path)
    shuffle.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    records = _read(args.source)
    _write(shuffle_ties(records, args.seed), args.target)
    groups = len({(r.get("user_id"), r.get("occurred_at")) for r in records})
    print(f"{len(records)} events in {groups} (user, timestamp) groups written to {args.target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
