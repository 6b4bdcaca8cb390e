"""Adapters from the real public datasets (../shared/data) to pgrecs' canonical records.

Each dataset yields item dicts and event dicts with the loader's canonical field names, so
the sample, the audits, the benchmarks and the evaluation all read them the same way.
Raw text is passed through untouched: cleaning is the dbt project's job.
"""

from __future__ import annotations

import ast
import csv
import gzip
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from pgrecs.errors import PgrecsError

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
DATASETS = ("magazine", "movielens", "beauty", "retail")

# Stock codes of the UCI set that are fees, postage or adjustments rather than products.
RETAIL_NON_PRODUCTS = {"POST", "DOT", "M", "C2", "D", "S", "BANK CHARGES", "AMAZONFEE", "CRUK", "PADS", "B"}


def _root(root: Path | None) -> Path:
    root = Path(root) if root else SHARED_DATA
    if not root.exists():
        raise PgrecsError(f"datasets folder not found: {root}")
    return root


def _epoch(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat()


# --- Amazon magazine subscriptions (2018) -------------------------------------------------

def _magazine_items(root: Path) -> Iterator[dict]:
    seen: set[str] = set()
    with gzip.open(root / "amazon-magazine-subscriptions-2018/meta_Magazine_Subscriptions.json.gz", "rt") as fh:
        for line in fh:
            row = json.loads(line)
            if row["asin"] in seen:  # repeats are byte-identical
                continue
            seen.add(row["asin"])
            details = row.get("details") or {}
            attributes = {k.strip().rstrip(":").strip(): v for k, v in details.items() if isinstance(v, str)}
            yield {
                "external_id": row["asin"],
                "title": row.get("title") or None,
                "description": " ".join(row.get("description") or []) or None,
                "brand": row.get("brand") or None,
                "category_path": row.get("category") or [],
                "attributes": attributes,
                "image_url": (row.get("imageURLHighRes") or row.get("imageURL") or [None])[0],
            }


def _magazine_events(root: Path) -> Iterator[dict]:
    with gzip.open(root / "amazon-magazine-subscriptions-2018/Magazine_Subscriptions.csv.gz", "rt") as fh:
        for item, user, rating, ts in csv.reader(fh):
            yield {"user_id": user, "item_id": item, "event_type": "rating",
                   "value": float(rating), "occurred_at": _epoch(int(ts))}


# --- MovieLens latest small ---------------------------------------------------------------

def _movielens_items(root: Path) -> Iterator[dict]:
    folder = root / "movielens-latest-small"
    tags: dict[str, Counter] = defaultdict(Counter)
    with open(folder / "tags.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            tags[row["movieId"]][row["tag"].strip().lower()] += 1
    with open(folder / "movies.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            genres = [] if row["genres"] == "(no genres listed)" else row["genres"].split("|")
            yield {
                "external_id": row["movieId"],
                "title": row["title"],
                "category_path": genres[:1],
                "attributes": {"genres": genres, "tags": [t for t, _ in tags[row["movieId"]].most_common(10)]},
            }


def _movielens_events(root: Path) -> Iterator[dict]:
    with open(root / "movielens-latest-small/ratings.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            yield {"user_id": row["userId"], "item_id": row["movieId"], "event_type": "rating",
                   "value": float(row["rating"]), "occurred_at": _epoch(int(row["timestamp"]))}


# --- Amazon All Beauty 2023 (5-core) ------------------------------------------------------

def _beauty_items(root: Path) -> Iterator[dict]:
    with open(root / "amazon-all-beauty-2023-5core/meta_All_Beauty.5core_items.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                details = ast.literal_eval(row["details"]) if row["details"] else {}
            except (ValueError, SyntaxError):
                details = {}
            details = {k: v for k, v in details.items() if isinstance(v, str)}
            try:
                price = float(row["price"]) if row["price"] else None
            except ValueError:
                price = None
            yield {
                "external_id": row["parent_asin"],
                "title": row["title"] or None,
                "description": row["description"] or None,
                "brand": details.pop("Brand", None),
                "category_path": ["Beauty"],
                "attributes": details,
                "price": price,
                "currency": "USD" if price is not None else None,
            }


def _beauty_events(root: Path) -> Iterator[dict]:
    with gzip.open(root / "amazon-all-beauty-2023-5core/All_Beauty.5core.csv.gz", "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            yield {"user_id": row["user_id"], "item_id": row["parent_asin"], "event_type": "rating",
                   "value": float(row["rating"]), "occurred_at": _epoch(int(row["timestamp"]) / 1000)}


# --- UCI Online Retail --------------------------------------------------------------------

def _retail_purchase_lines(root: Path) -> Iterator[dict]:
    """Purchase lines with a customer: no cancellations, positive quantity and price, products only."""
    with gzip.open(root / "uci-online-retail/online_retail.csv.gz", "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            code = row["StockCode"].upper()
            if (not row["CustomerID"] or row["InvoiceNo"].startswith("C") or int(row["Quantity"]) <= 0
                    or float(row["UnitPrice"]) <= 0 or code in RETAIL_NON_PRODUCTS
                    or code.startswith(("DCGS", "GIFT_"))):
                continue
            row["StockCode"] = code
            yield row


def _retail_items(root: Path) -> Iterator[dict]:
    names: dict[str, Counter] = defaultdict(Counter)
    prices: dict[str, list[float]] = defaultdict(list)
    for row in _retail_purchase_lines(root):
        names[row["StockCode"]][row["Description"]] += 1
        prices[row["StockCode"]].append(float(row["UnitPrice"]))
    for code in sorted(names):
        ps = sorted(prices[code])
        yield {
            "external_id": code,
            "title": names[code].most_common(1)[0][0],  # most frequent name among purchase lines
            "price": ps[len(ps) // 2],
            "currency": "GBP",
        }


def _retail_events(root: Path) -> Iterator[dict]:
    for row in _retail_purchase_lines(root):
        yield {
            "user_id": row["CustomerID"],
            "item_id": row["StockCode"],
            "event_type": "purchase",
            "value": round(int(row["Quantity"]) * float(row["UnitPrice"]), 2),
            # UK wall-clock time in the source; stored as UTC (no zone information exists)
            "occurred_at": row["InvoiceDate"].replace(" ", "T") + "+00:00",
            "session_id": row["InvoiceNo"],
        }


_ADAPTERS = {
    "magazine": (_magazine_items, _magazine_events),
    "movielens": (_movielens_items, _movielens_events),
    "beauty": (_beauty_items, _beauty_events),
    "retail": (_retail_items, _retail_events),
}


def _adapter(name: str):
    if name not in _ADAPTERS:
        raise PgrecsError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return _ADAPTERS[name]


def iter_items(name: str, root: Path | None = None) -> Iterator[dict]:
    return _adapter(name)[0](_root(root))


def iter_events(name: str, root: Path | None = None) -> Iterator[dict]:
    return _adapter(name)[1](_root(root))


def write_jsonl_gz(records, path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as fh:
        for record in records:
            fh.write(json.dumps({k: v for k, v in record.items() if v is not None}, ensure_ascii=False) + "\n")
            count += 1
    return count


def export(name: str, out_dir: Path, root: Path | None = None) -> dict[str, int]:
    """Write <out_dir>/items.jsonl.gz and events.jsonl.gz in the loader's canonical format."""
    return {
        "items": write_jsonl_gz(iter_items(name, root), out_dir / "items.jsonl.gz"),
        "events": write_jsonl_gz(iter_events(name, root), out_dir / "events.jsonl.gz"),
    }


def make_sample(out_dir: Path, root: Path | None = None, customers: int = 400, seed: int = 7) -> dict[str, int]:
    """The demo sample: every purchase of a seeded random subset of UCI Online Retail customers
    (CC BY 4.0), and the items they bought."""
    import random

    events = list(iter_events("retail", root))
    customer_ids = sorted({e["user_id"] for e in events})
    chosen = set(random.Random(seed).sample(customer_ids, customers))
    sample_events = [e for e in events if e["user_id"] in chosen]
    bought = {e["item_id"] for e in sample_events}
    sample_items = [i for i in iter_items("retail", root) if i["external_id"] in bought]
    return {
        "items": write_jsonl_gz(sample_items, out_dir / "items.jsonl.gz"),
        "events": write_jsonl_gz(sample_events, out_dir / "events.jsonl.gz"),
    }


if __name__ == "__main__":  # python -m pgrecs.datasets sample data/sample
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "sample":
        print(make_sample(Path(sys.argv[2])))
    elif len(sys.argv) == 4 and sys.argv[1] == "export":
        print(export(sys.argv[2], Path(sys.argv[3])))
    else:
        raise SystemExit("usage: python -m pgrecs.datasets sample OUT_DIR | export NAME OUT_DIR")
