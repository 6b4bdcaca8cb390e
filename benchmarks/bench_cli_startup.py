"""`pgrecs` start-up: wall time of commands that need no model, this tree against a baseline revision.

Each command runs as a fresh process (`python -c "from pgrecs.cli import main; main()" ARGS`, what
the `pgrecs` console script does), RUNS times, the two revisions interleaved so that load on the
machine hits both alike; medians are reported. The baseline revision's `app/`, `sql/` and
`migrations/` are exported with `git archive` and put first on PYTHONPATH as package `pgrecs`.
Commands that read the database run against one migrated database on the benchmark server.

Floors measured in the same run: `python -c pass` (interpreter and site) and `import click`.
Also recorded: how many modules `import pgrecs.cli` loads, and which heavy libraries among them.

Environment: PGRECS_CLI_BASELINE_REV (default: the revision that imported every command's
libraries at start-up), PGRECS_CLI_RUNS (default 11).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from benchmarks.run import bench_server, fresh_database, median

ROOT = Path(__file__).resolve().parent.parent
BASELINE_REV = os.environ.get("PGRECS_CLI_BASELINE_REV", "9c39c12")
RUNS = int(os.environ.get("PGRECS_CLI_RUNS", "11"))
ENTRY = "import sys; from pgrecs.cli import main; sys.argv[0] = 'pgrecs'; main()"
HEAVY = ("torch", "numpy", "scipy", "sentence_transformers", "transformers", "alembic", "sqlalchemy",
         "flask", "apiflask", "psycopg", "dbt", "pandas", "tqdm")
# command line -> whether it needs the database
COMMANDS = [
    (["--help"], False),
    (["--version"], False),
    (["load", "--help"], False),
    (["embed", "--help"], False),
    (["keys", "create", "--help"], False),
    (["db", "status"], True),
    (["keys", "list"], True),
    (["rejects", "--limit", "1"], True),
]
TARGET_S = 0.5


def _export(rev: str, into: Path) -> Path:
    """The revision's package as `into/pgrecs` (plus sql/, migrations/, alembic.ini beside it)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, "app", "sql", "migrations",
                              "alembic.ini"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into)
    (into / "app").rename(into / "pgrecs")
    return into


def _env(pythonpath: Path | None, db_url: str, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATABASE_URL")}
    env["DATABASE_URL"] = db_url
    env["PGRECS_HOME"] = str(home)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def _time(argv: list[str], env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[3:])} failed: {done.stderr.strip()[-300:]}")
    return elapsed


def _modules(env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", "import sys, json; import pgrecs.cli; "
                          "print(json.dumps(sorted(sys.modules)))"], env=env, capture_output=True, text=True,
                         check=True).stdout
    import json

    names = json.loads(out)
    return {"modules": len(names), "heavy": sorted({n.split(".")[0] for n in names if n.split(".")[0] in HEAVY})}


def run() -> dict:
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="pgrecs_cli_") as tmp, bench_server() as server, \
            fresh_database(server, "cli_startup") as db_url:
        baseline_path = _export(BASELINE_REV, Path(tmp) / "baseline")
        home = Path(tmp) / "home"
        envs = {"baseline": _env(baseline_path, db_url, home), "tree": _env(None, db_url, home)}
        times: dict[str, dict[str, list[float]]] = {rev: {" ".join(c): [] for c, _ in COMMANDS} for rev in envs}
        floors = {"python -c pass": [], "python -c 'import click'": []}
        for _ in range(RUNS):
            floors["python -c pass"].append(_time([python, "-c", "pass"], envs["tree"]))
            floors["python -c 'import click'"].append(_time([python, "-c", "import click"], envs["tree"]))
            for command, _needs_db in COMMANDS:
                for rev, env in envs.items():
                    times[rev][" ".join(command)].append(_time([python, "-c", ENTRY, *command], env))
        modules = {rev: _modules(env) for rev, env in envs.items()}
    rows = []
    for command, needs_db in COMMANDS:
        name = " ".join(command)
        before, after = median(times["baseline"][name]), median(times["tree"][name])
        rows.append({"command": f"pgrecs {name}", "needs_database": needs_db, "baseline_median_s": round(before, 3),
                     "median_s": round(after, 3), "ratio": round(after / before, 3),
                     "seconds": [round(x, 3) for x in times["tree"][name]],
                     "baseline_seconds": [round(x, 3) for x in times["baseline"][name]]})
    help_row = rows[0]
    slowest = max(r["median_s"] for r in rows)
    return {
        "metric": "pgrecs --help, wall time of a fresh process",
        "value": help_row["median_s"],
        "unit": "s",
        "baseline": help_row["baseline_median_s"],
        "ratio": help_row["ratio"],
        "target": f"every command below < {TARGET_S} s",
        "met": slowest < TARGET_S,
        "note": f"median of {RUNS} interleaved runs; baseline = revision {BASELINE_REV}",
        "baseline_revision": BASELINE_REV,
        "commands": rows,
        "floors_median_s": {k: round(median(v), 3) for k, v in floors.items()},
        "imported_by_pgrecs_cli": modules,
    }
