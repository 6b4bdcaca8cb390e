"""Load 1,000,000 events and a 200,000-item shop catalog end to end through `pgrecs load`.

Events are generated from the UCI Online Retail distributions: users, items and purchase times
are drawn with the frequencies of the real invoices; event types follow a view > click >
add_to_cart > purchase funnel; 0.1 % of rows are deliberately bad (unknown item, unparseable
time, bad value) so the reject and warning paths are exercised. The catalog repeats the UCI
stock codes with their real titles and unit prices, written the ways shops write prices
("2.55", "£2.55", "1,299.00", "GBP 2.55", "£1.25 - £2.50", "call us", none).

The timed path is the CLI command itself, in a fresh process per run (timed inside it, after
imports): parsing, COPY, validation, rejects, warnings and merge, on a fresh database (items
loaded first, untimed, for the events runs). With PGRECS_BENCH_BASELINE_REF set to a git ref,
the same loads run with that version's code (exported with `git archive`, its own migrations),
interleaved run by run with the current code, and `ratio` is current / that version: the
before-and-after of a change measured in one command on the same machine. A bare COPY of the
events CSV into an unlogged text table is reported as the floor.

Environment: PGRECS_BENCH_EVENTS (default 1000000), PGRECS_BENCH_ITEMS (default 200000),
PGRECS_BENCH_RUNS (default 3), PGRECS_BENCH_BASELINE_REF (optional git ref).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import gzip
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from benchmarks.run import WORK, _with_database, bench_server, median

UCI = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "uci-online-retail" / "online_retail.csv.gz"
SEED = 20261125
GENERATOR_VERSION = 1
EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")
EVENT_PROBS = (0.70, 0.15, 0.10, 0.05)


def _read_uci(path: Path):
    items: dict[str, tuple[str, str]] = {}
    item_freq: Counter = Counter()
    user_freq: Counter = Counter()
    times: list[float] = []
    with gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="") as f:
        for row in csv.DictReader(f):
            code = row["StockCode"].strip()
            if not code:
                continue
            items.setdefault(code, (row["Description"].strip(), row["UnitPrice"].strip()))
            item_freq[code] += 1
            if row["CustomerID"].strip():
                user_freq[row["CustomerID"].strip()] += 1
            times.append(dt.datetime.fromisoformat(row["InvoiceDate"]).replace(tzinfo=dt.timezone.utc).timestamp())
    return items, item_freq, user_freq, times


def generate(n_events: int, directory: Path) -> tuple[Path, Path]:
    """Write items.csv and events.csv (cached by size, seed and generator version)."""
    import numpy as np

    directory.mkdir(parents=True, exist_ok=True)
    items_path = directory / f"items_v{GENERATOR_VERSION}.csv"
    events_path = directory / f"events_{n_events}_v{GENERATOR_VERSION}.csv"
    if items_path.exists() and events_path.exists():
        return items_path, events_path
    items, item_freq, user_freq, times = _read_uci(UCI)
    rng = np.random.default_rng(SEED)
    codes = np.array(list(item_freq))
    p_items = np.array([item_freq[c] for c in codes], dtype=float)
    p_items /= p_items.sum()
    users = np.array(list(user_freq))
    p_users = np.array([user_freq[u] for u in users], dtype=float)
    p_users /= p_users.sum()
    times_arr = np.array(times)

    with open(items_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["external_id", "title", "price", "currency"])
        for code, (title, price) in items.items():
            w.writerow([code, title, price if price and not price.startswith("-") else "", "GBP"])

    item_idx = rng.choice(len(codes), size=n_events, p=p_items)
    user_idx = rng.choice(len(users), size=n_events, p=p_users)
    ts = rng.choice(times_arr, size=n_events) + rng.integers(0, 3600, size=n_events)
    kinds = rng.choice(len(EVENT_TYPES), size=n_events, p=EVENT_PROBS)
    qty = rng.geometric(0.3, size=n_events)
    bad = rng.random(n_events) < 0.001
    with open(events_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "event_type", "value", "occurred_at", "session_id"])
        for i in range(n_events):
            user = users[user_idx[i]]
            t = dt.datetime.fromtimestamp(float(ts[i]), dt.timezone.utc)
            kind = EVENT_TYPES[kinds[i]]
            row = [user, codes[item_idx[i]], kind, str(qty[i]) if kind == "purchase" else "",
                   t.strftime("%Y-%m-%dT%H:%M:%SZ"), f"{user}-{t:%Y%m%d}"]
            if bad[i]:
                row[(1, 4, 3)[i % 3]] = ("NO-SUCH-ITEM", "yesterday-ish", "many")[i % 3]
            w.writerow(row)
    return items_path, events_path


PRICE_FORMS = ("{p}", "£{p}", "{thousands}", "GBP {p}", "£{p} - £{double}", "call us", "")
TIMED = """
import sys, time
from pgrecs.cli import main
started = time.perf_counter()
main.main(sys.argv[1:], standalone_mode=False)
print(f"ELAPSED {time.perf_counter() - started}", file=sys.stderr)
"""


def generate_catalog(n_items: int, directory: Path) -> Path:
    """A shop catalog of n_items rows: UCI stock codes and titles, prices in the forms shops use."""
    path = directory / f"catalog_{n_items}_v{GENERATOR_VERSION}.csv"
    if path.exists():
        return path
    items, _, _, _ = _read_uci(UCI)
    base = [(code, title, price) for code, (title, price) in items.items() if price and not price.startswith("-")]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["external_id", "title", "price", "stock"])
        for i in range(n_items):
            code, title, price = base[i % len(base)]
            value = float(price)
            form = PRICE_FORMS[i % len(PRICE_FORMS)]
            text = form.format(p=f"{value:.2f}", double=f"{2 * value:.2f}", thousands=f"{value * 1000:,.2f}")
            w.writerow([f"{code}-{i // len(base)}", title, text, str(i % 50)])
    return path


class Version:
    """One version of the code: a tree whose app/ is imported as pgrecs in its own processes."""

    def __init__(self, name: str, tree: Path, work: Path):
        self.name = name
        self.tree = tree
        self.path_dir = work / f"pythonpath-{name}"
        self.path_dir.mkdir(parents=True, exist_ok=True)
        link = self.path_dir / "pgrecs"
        if link.is_symlink():
            link.unlink()
        link.symlink_to(tree / "app")
        self.template: str | None = None

    def _python(self, code: str, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(self.path_dir)}
        proc = subprocess.run([sys.executable, "-c", code, *args], cwd=self.tree, env=env, capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name}: {proc.stderr.strip()[-2000:]}")
        return proc

    def migrate(self, url: str) -> None:
        self._python("import sys; from pgrecs import migrate; migrate.upgrade(sys.argv[1])", url)

    def load(self, url: str, *args: str) -> float:
        proc = self._python(TIMED, "--db-url", url, "load", *args, "--quiet")
        print(f"[{self.name}] {proc.stdout.strip()}", file=sys.stderr)
        return float(proc.stderr.rsplit("ELAPSED", 1)[1])


def baseline_tree(ref: str, work: Path) -> Path:
    """The code at git ref `ref`, exported (not checked out) under work/."""
    repo = Path(__file__).resolve().parent.parent
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", ref], capture_output=True, text=True,
                         check=True).stdout.strip()
    tree = work / f"baseline-{sha}"
    if not (tree / "app").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(repo), "archive", sha], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


@contextlib.contextmanager
def version_database(server_url: str, version: Version, name: str):
    """A fresh database migrated by this version's code (from a template migrated once)."""
    import psycopg
    from psycopg import sql

    def admin(statement: sql.Composable) -> None:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(statement)

    if version.template is None:
        version.template = f"bench_template_{version.name}"
        admin(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(version.template)))
        admin(sql.SQL("create database {}").format(sql.Identifier(version.template)))
        version.migrate(_with_database(server_url, version.template))
    dbname = f"{name}_{version.name}_{os.getpid()}"
    admin(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname)))
    admin(sql.SQL("create database {} template {}").format(sql.Identifier(dbname), sql.Identifier(version.template)))
    try:
        yield _with_database(server_url, dbname)
    finally:
        admin(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname)))


def _bare_copy(url: str, events_path: Path) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create unlogged table bare_events (user_id text, item_id text, event_type text, value text,"
                     " occurred_at text, session_id text)")
        started = time.perf_counter()
        with conn.cursor() as cur, open(events_path, "rb") as f:
            with cur.copy("copy bare_events from stdin (format csv, header true)") as copy:
                while chunk := f.read(1 << 20):
                    copy.write(chunk)
        elapsed = time.perf_counter() - started
        conn.execute("drop table bare_events")
    return elapsed


def run() -> dict:
    import psycopg

    n_events = int(os.environ.get("PGRECS_BENCH_EVENTS", "1000000"))
    n_items = int(os.environ.get("PGRECS_BENCH_ITEMS", "200000"))
    runs = int(os.environ.get("PGRECS_BENCH_RUNS", "3"))
    ref = os.environ.get("PGRECS_BENCH_BASELINE_REF")
    t0 = time.perf_counter()
    items_path, events_path = generate(n_events, WORK / "data")
    catalog_path = generate_catalog(n_items, WORK / "data")
    generate_s = time.perf_counter() - t0
    repo = Path(__file__).resolve().parent.parent
    versions = [Version("current", repo, WORK)]
    if ref:
        versions.append(Version("baseline", baseline_tree(ref, WORK), WORK))
    events_s: dict[str, list[float]] = {v.name: [] for v in versions}
    catalog_s: dict[str, list[float]] = {v.name: [] for v in versions}
    copy_s, checks = [], {v.name: [] for v in versions}
    with bench_server() as server:
        for i in range(runs):
            for version in versions if i % 2 == 0 else versions[::-1]:  # alternate who goes first
                with version_database(server, version, "bench_load") as url:
                    version.load(url, "items", str(items_path))
                    if version.name == "current":
                        copy_s.append(_bare_copy(url, events_path))
                    events_s[version.name].append(version.load(url, "events", str(events_path)))
                    with psycopg.connect(url) as conn:
                        stored = conn.execute("select count(*) from pgrecs.events").fetchone()[0]
                        rejected = conn.execute(
                            "select count(*) from pgrecs.ingest_rejects where kind = 'events'").fetchone()[0]
                        pg_version = conn.execute("show server_version").fetchone()[0]
                    checks[version.name].append({"events_stored": stored, "rejected": rejected})
                with version_database(server, version, "bench_catalog") as url:
                    catalog_s[version.name].append(version.load(url, "items", str(catalog_path)))
                    with psycopg.connect(url) as conn:
                        priced = conn.execute("select count(*) from pgrecs.items where price is not null").fetchone()[0]
                    checks[version.name][-1]["catalog_items_with_price"] = priced
                print(f"run {i + 1}/{runs} {version.name}: events {n_events / events_s[version.name][-1]:,.0f} rows/s,"
                      f" catalog {n_items / catalog_s[version.name][-1]:,.0f} rows/s", file=sys.stderr)

    def rate(n: int, seconds: list[float]) -> float:
        return n / median(seconds)

    value = rate(n_events, events_s["current"])
    result = {
        "metric": f"pgrecs load events, {n_events:,} CSV rows, end to end with validation",
        "value": round(value),
        "unit": "rows/s",
        "target": ">= 50,000 rows/s",
        "met": value >= 50_000,
        "note": f"median of {runs} run(s)",
        "events": n_events,
        "file_bytes": events_path.stat().st_size,
        "load_seconds": [round(s, 3) for s in events_s["current"]],
        "bare_copy_rows_per_s": round(rate(n_events, copy_s)),
        "bare_copy_seconds": [round(s, 3) for s in copy_s],
        "catalog": {
            "metric": f"pgrecs load items, {n_items:,}-row shop catalog (prices with currency, separators, ranges)",
            "rows_per_s": round(rate(n_items, catalog_s["current"])),
            "load_seconds": [round(s, 3) for s in catalog_s["current"]],
        },
        "generate_seconds": round(generate_s, 1),
        "checks": checks,
        "postgres": pg_version,
    }
    if ref:
        baseline = rate(n_events, events_s["baseline"])
        result.update(baseline=round(baseline), ratio=round(value / baseline, 3),
                      note=f"median of {runs} run(s), interleaved; baseline = the same load with the code at {ref}",
                      baseline_ref=ref, baseline_load_seconds=[round(s, 3) for s in events_s["baseline"]])
        catalog_baseline = rate(n_items, catalog_s["baseline"])
        result["catalog"].update(
            baseline_rows_per_s=round(catalog_baseline),
            ratio=round(result["catalog"]["rows_per_s"] / catalog_baseline, 3),
            baseline_load_seconds=[round(s, 3) for s in catalog_s["baseline"]])
    return result
