"""Running the dbt project (dbt_project/) programmatically against any pgrecs database.

The profile reads only environment variables; `dbt_env(url)` turns a DATABASE_URL or libpq
conninfo (the embedded server's unix-socket URL included) into them, so analysts can do the same:

    eval "$(pgrecs db env)"  # exports PGRECS_DBT_* and DBT_PROFILES_DIR
    dbt build --project-dir dbt_project
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pgrecs.errors import PgrecsError
from pgrecs.resources import resource

PROJECT_DIR = resource("dbt_project")
_lock = threading.Lock()


def dbt_env(url: str) -> dict[str, str]:
    """The PGRECS_DBT_* variables profiles.yml reads, from a URL or conninfo string."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception as exc:  # psycopg.ProgrammingError for malformed strings
        raise PgrecsError(f"cannot read the database URL: {exc}") from exc
    env = {
        "PGRECS_DBT_HOST": str(params.get("host") or "localhost"),
        "PGRECS_DBT_PORT": str(params.get("port") or "5432"),
        "PGRECS_DBT_USER": str(params.get("user") or os.environ.get("PGUSER") or "postgres"),
        "PGRECS_DBT_PASSWORD": str(params.get("password") or ""),
        "PGRECS_DBT_DBNAME": str(params.get("dbname") or "postgres"),
        "PGRECS_DBT_SSLMODE": str(params.get("sslmode") or "prefer"),
    }
    return env


@dataclass
class NodeResult:
    kind: str
    name: str
    status: str
    seconds: float
    message: str | None = None


@dataclass
class BuildResult:
    nodes: list[NodeResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def models(self) -> int:
        return sum(1 for n in self.nodes if n.kind == "model")

    @property
    def tests(self) -> int:
        return sum(1 for n in self.nodes if n.kind in ("test", "unit_test"))


def _target_path(url: str) -> Path:
    # one target dir per database: partial parsing is reused between runs, runs against
    # different databases (tests, evaluation) do not overwrite each other's manifests
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "pgrecs-dbt" / digest


def run(
    url: str,
    command: str = "build",
    *,
    select: str | None = None,
    exclude: str | None = None,
    full_refresh: bool = False,
    variables: dict | None = None,
    progress: Callable[[NodeResult, int, int], None] | None = None,
) -> BuildResult:
    """Run `dbt <command>` on the database at url; raise PgrecsError naming the first failure."""
    from dbt.cli.main import dbtRunner

    target = _target_path(url)
    args = [
        command,
        "--project-dir", str(PROJECT_DIR),
        "--profiles-dir", str(PROJECT_DIR),
        "--target-path", str(target),
        "--log-path", str(target / "logs"),
        "--quiet",
        # reuse target/partial_parse.msgpack (same project, vars and profile: no parsing at all);
        # no usage tracking or version check: nothing to send from a refresh job
        "--partial-parse",
        "--no-send-anonymous-usage-stats",
        "--no-version-check",
    ]
    if select:
        # only tests whose parents are all selected (a relationships test to an unbuilt model is not)
        args += ["--select", select, "--indirect-selection", "cautious"]
    if exclude:
        args += ["--exclude", exclude]
    if full_refresh and command in ("build", "run"):
        args.append("--full-refresh")
    if variables:
        args += ["--vars", json.dumps(variables)]

    result = BuildResult()

    def on_event(event) -> None:
        name = event.info.name
        if name not in ("LogModelResult", "LogTestResult", "LogNodeResult", "LogSeedResult"):
            return
        data = event.data
        node_info = data.node_info
        kind = node_info.resource_type or ("test" if name == "LogTestResult" else "model")
        node = NodeResult(kind=kind, name=node_info.node_name, status=str(data.status),
                          seconds=float(getattr(data, "execution_time", 0.0) or 0.0))
        result.nodes.append(node)
        if progress:
            progress(node, int(getattr(data, "index", 0) or 0), int(getattr(data, "total", 0) or 0))

    env = dbt_env(url)
    with _lock:  # dbt keeps global state: one invocation at a time per process
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            outcome = dbtRunner(callbacks=[on_event]).invoke(args)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    if outcome.exception is not None:
        first = str(outcome.exception).strip().splitlines()
        raise PgrecsError(f"dbt {command} failed: {first[0] if first else outcome.exception!r}")
    if not outcome.success:
        for res in getattr(outcome.result, "results", None) or []:
            status = str(res.status)
            if status in ("error", "fail", "runtime error"):
                node = res.node
                message = " ".join(str(res.message or status).split())
                raise PgrecsError(
                    f"dbt {command} failed at {node.resource_type} {node.name}: {message[:300]}")
        raise PgrecsError(f"dbt {command} failed (see {target / 'logs' / 'dbt.log'})")
    result.seconds = sum(n.seconds for n in result.nodes)
    return result
