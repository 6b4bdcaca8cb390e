"""The common benchmark runner: `python -m benchmarks.run NAME|all`.

Each benchmark is a module `benchmarks/bench_<name>.py` exposing `run() -> dict`. The dict
holds whatever the benchmark measured; these keys, when present, make the summary row:

    metric    what the headline number is, e.g. "pgrecs load events, end to end"
    value     the headline number (a median when runs > 1)
    unit      e.g. "rows/s"
    baseline  the same quantity for the reference it is compared with (optional)
    ratio     value / baseline (optional; computed when both are there)
    target    the target as text, e.g. ">= 50000 rows/s" (optional)
    met       whether the target is met (optional)
    note      a short remark, e.g. "median of 3 runs"

The runner adds machine information and the time, writes benchmarks/results/<name>.json and
prints a Markdown table row (header first). Helpers for benchmarks live here too:
`median`, `machine_info`, `bench_server` (an embedded PostgreSQL under /tmp for benchmarks),
`fresh_database` (a newly migrated database on it), `exported_tree` (the code at a git ref,
exported into a temporary directory) and `package_path` (a PYTHONPATH entry that imports a
tree's own pgrecs package).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
WORK = Path(os.environ.get("PGRECS_BENCH_DIR", "/tmp/pgrecs_bench"))
HEADER = ("| benchmark | metric | value | baseline | ratio | target | note |\n"
          "| --- | --- | --- | --- | --- | --- | --- |")


def median(values) -> float:
    return float(statistics.median(values))


def machine_info() -> dict:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_total_kb"] = int(f.readline().split()[1])
    except OSError:
        pass
    return info


@contextlib.contextmanager
def bench_server() -> Iterator[str]:
    """The embedded PostgreSQL for benchmarks (under $PGRECS_BENCH_DIR), stopped afterwards;
    `$PGRECS_BENCH_DATABASE_URL` (a server URL) is used instead when set."""
    external = os.environ.get("PGRECS_BENCH_DATABASE_URL")
    if external:
        yield external
        return
    from pgrecs import embedded

    data_dir = WORK / "pgdata"
    was_running = embedded.is_running(data_dir)
    url = embedded.start(data_dir)
    try:
        yield url
    finally:
        if not was_running:
            embedded.stop(data_dir)


def _with_database(url: str, dbname: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)


_template_ready: set[str] = set()


@contextlib.contextmanager
def fresh_database(server_url: str, name: str = "bench") -> Iterator[str]:
    """A newly created, migrated database (copied from a template migrated once per process)."""
    import psycopg
    from psycopg import sql

    from pgrecs import migrate

    template = "pgrecs_bench_template"
    if server_url not in _template_ready:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(template)))
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(template)))
        migrate.upgrade(_with_database(server_url, template))
        _template_ready.add(server_url)
    dbname = f"{name}_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("create database {} template {}").format(sql.Identifier(dbname), sql.Identifier(template)))
    try:
        yield _with_database(server_url, dbname)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname)))


def resolve_ref(ref: str) -> str:
    """The commit `ref` names in this repository (full sha); a one-line SystemExit when it names none."""
    proc = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", "--end-of-options",
                           f"{ref}^{{commit}}"], capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise SystemExit(f"error: {ref!r} is not a commit in {REPO}")
    return proc.stdout.strip()


@contextlib.contextmanager
def exported_tree(ref: str) -> Iterator[Path]:
    """The files of commit `ref`, exported with `git archive REF | tar -x` into a temporary directory
    under $PGRECS_BENCH_DIR (removed afterwards). Local objects only: no network."""
    sha = resolve_ref(ref)
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"tree-{sha[:9]}-", dir=WORK) as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        archive = subprocess.Popen(["git", "-C", str(REPO), "archive", sha], stdout=subprocess.PIPE)
        untar = subprocess.run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout, capture_output=True, text=True)
        archive.stdout.close()
        if archive.wait() != 0 or untar.returncode != 0:
            raise SystemExit(f"error: could not export {ref} ({sha[:9]}): {untar.stderr.strip() or 'git archive failed'}")
        yield tree


def package_path(tree: Path, directory: Path) -> Path:
    """A PYTHONPATH entry under `directory` from which `import pgrecs` imports `tree`'s own package: the
    directory pyproject.toml maps the package to ([tool.setuptools.package-dir], e.g. pgrecs = "app"),
    linked as directory/pgrecs. It comes before any installed pgrecs on sys.path."""
    import tomllib

    config = tomllib.loads((tree / "pyproject.toml").read_text()).get("tool", {}).get("setuptools", {})
    package_dir = config.get("package-dir", {})
    source = package_dir.get("pgrecs") or str(Path(package_dir.get("", ".")) / "pgrecs")
    if not (tree / source / "__init__.py").is_file():
        raise SystemExit(f"error: {tree} has no pgrecs package at {source}/ (from its pyproject.toml)")
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / "pgrecs"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to((tree / source).resolve(), target_is_directory=True)
    return directory


def available() -> list[str]:
    return sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table_row(name: str, result: dict) -> str:
    unit = result.get("unit", "")
    value = result.get("value")
    baseline = result.get("baseline")
    return "| " + " | ".join([
        name,
        str(result.get("metric", "")),
        f"{_fmt(value)} {unit}".strip(),
        f"{_fmt(baseline)} {unit}".strip() if baseline is not None else "",
        _fmt(result.get("ratio")),
        str(result.get("target", "")) + ("" if "met" not in result else (" (met)" if result["met"] else " (NOT met)")),
        str(result.get("note", "")),
    ]) + " |"


def run_one(name: str) -> dict:
    module = importlib.import_module(f"benchmarks.bench_{name}")
    started = dt.datetime.now(dt.timezone.utc)
    load_before = os.getloadavg()
    result = module.run()
    load_after = os.getloadavg()
    if result.get("ratio") is None and result.get("value") and result.get("baseline"):
        result["ratio"] = result["value"] / result["baseline"]
    record = {
        "benchmark": name,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        # other work on the machine skews timings: the 1-minute load average before and after
        "load_average_1m": [round(load_before[0], 2), round(load_after[0], 2)],
        **result,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return record


def main(argv: list[str]) -> int:
    names = argv or ["all"]
    if names == ["all"]:
        names = available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"error: unknown benchmark {unknown[0]!r} (available: {', '.join(available())})", file=sys.stderr)
        return 1
    print(HEADER)
    for name in names:
        record = run_one(name)
        print(table_row(name, record), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
