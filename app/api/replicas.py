"""Read replicas for the API: which standbys exist, which are healthy, whose turn it is.

The replicas are the app's REPLICA_URLS config when given, else PGRECS_REPLICA_URLS plus the
running embedded replicas (`pgrecs db replica add`) when the primary is the embedded server.
That list is read again by the first read after REPLICA_REFRESH_S seconds (default 2), so a
replica added, started, stopped or removed takes or leaves reads without a restart; a replica
still present keeps its pool and its health. Each gets its own connection pool, opened on first use.

Health is learnt from use, with no background thread: a replica whose connection or query fails
is marked down and its pool closed; after a backoff (0.5 s, doubling to 10 s) the next read probes
it with one short connection and, if it answers as a standby, it takes reads again. Reads are
spread round robin over the healthy ones.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from flask import current_app
from psycopg_pool import ConnectionPool

from pgrecs import replicas as standbys

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0
PROBE_TIMEOUT_S = 1
# how long a read waits for a free connection of a busy replica before using the next server
CHECKOUT_WAIT_S = 1.0
# how often the replica list (config, PGRECS_REPLICA_URLS, embedded replicas) is read again
REFRESH_S = 2.0


@dataclass
class Replica:
    name: str
    url: str
    pool: ConnectionPool | None = None
    down_until: float = 0.0
    backoff_s: float = 0.0
    last_error: str | None = None
    failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def healthy(self) -> bool:
        return self.backoff_s == 0.0

    def usable(self) -> bool:
        """Healthy, or down with its backoff over and answering a probe (then healthy again)."""
        if self.healthy:
            return True
        if time.monotonic() < self.down_until:
            return False
        with self.lock:
            if self.healthy:
                return True
            state = standbys.replica_state(self.url, timeout_s=PROBE_TIMEOUT_S)
            if state.reachable and state.in_recovery:
                self.backoff_s, self.last_error = 0.0, None
                return True
            self._back_off(state.error or "not a standby")
            return False

    def mark_down(self, error: BaseException | str) -> None:
        with self.lock:
            self.failures += 1
            text = str(error).strip().splitlines()
            self._back_off(text[0] if text else error.__class__.__name__)

    def _back_off(self, error: str) -> None:
        self.backoff_s = min(MAX_BACKOFF_S, self.backoff_s * 2 if self.backoff_s else FIRST_BACKOFF_S)
        self.down_until = time.monotonic() + self.backoff_s
        self.last_error = error
        pool, self.pool = self.pool, None
        if pool is not None:
            # its connections point at a server that failed: drop them, a fresh pool comes with health
            threading.Thread(target=pool.close, kwargs={"timeout": 1.0}, daemon=True).start()

    def close(self) -> None:
        """No longer a replica of this process (removed or stopped): drop its pool."""
        with self.lock:
            pool, self.pool = self.pool, None
        if pool is not None:
            threading.Thread(target=pool.close, kwargs={"timeout": 1.0}, daemon=True).start()

    def get_pool(self, configure, max_size: int) -> ConnectionPool:
        with self.lock:
            if self.pool is None:
                self.pool = ConnectionPool(self.url, min_size=1, max_size=max_size, open=True,
                                           configure=configure, timeout=CHECKOUT_WAIT_S,
                                           kwargs={"connect_timeout": PROBE_TIMEOUT_S + 1})
            return self.pool


class ReplicaSet:
    """The replicas of this process, re-discovered at most every refresh_s seconds, on use."""

    def __init__(self, find: Callable[[], list[tuple[str, str]]], refresh_s: float = REFRESH_S):
        self._find = find
        self._refresh_s = refresh_s
        self._found_at = float("-inf")
        self._lock = threading.Lock()
        self._replicas: list[Replica] = []
        self._turn = itertools.count()

    @property
    def replicas(self) -> list[Replica]:
        if time.monotonic() - self._found_at >= self._refresh_s:
            self._rediscover()
        return self._replicas

    def _rediscover(self) -> None:
        with self._lock:
            if time.monotonic() - self._found_at < self._refresh_s:
                return  # another thread just did
            known = {(replica.name, replica.url): replica for replica in self._replicas}
            current = [known.pop(key, None) or Replica(*key) for key in dict.fromkeys(self._find())]
            for gone in known.values():
                gone.close()
            self._replicas, self._found_at = current, time.monotonic()

    def candidates(self) -> list[Replica]:
        """The usable replicas, starting with the one whose turn it is."""
        replicas = self.replicas
        if not replicas:
            return []
        start = next(self._turn) % len(replicas)
        ordered = replicas[start:] + replicas[:start]
        return [replica for replica in ordered if replica.usable()]

    def states(self, primary_wal_lsn: str | None) -> dict[str, dict]:
        """Each replica's health as this process sees it, and replay position and lag as it reports them."""
        return {replica.name: _state(replica, primary_wal_lsn) for replica in self.replicas}


def _state(replica: Replica, primary_wal_lsn: str | None) -> dict:
    state = standbys.replica_state(replica.url, primary_wal_lsn, timeout_s=PROBE_TIMEOUT_S)
    error = state.error or replica.last_error
    return {
        "state": state.label,
        "serving": replica.healthy and state.reachable and state.in_recovery,
        "replay_lsn": state.replay_lsn,
        "lag_seconds": state.lag_seconds,
        "lag_bytes": state.lag_bytes,
        "failures": replica.failures,
        **({"error": error} if error else {}),
    }


def discover(pool_url: str, configured: list[str] | None) -> list[tuple[str, str]]:
    """(name, url) of the replicas: the configured URLs when given, else PGRECS_REPLICA_URLS and the
    running embedded replicas."""
    if configured is not None:
        return [(standbys.display_url(url), url) for url in configured]
    from psycopg.conninfo import conninfo_to_dict

    from pgrecs import embedded
    from pgrecs.config import load_settings, replica_urls

    settings = load_settings()
    found = [(standbys.display_url(url), url) for url in replica_urls(settings)]
    embedded_url = embedded.url_if_running(settings.embedded_data_dir)
    # the embedded replicas are standbys of the embedded server: only when that is the primary
    if embedded_url and conninfo_to_dict(embedded_url).get("host") == conninfo_to_dict(pool_url).get("host"):
        for made in standbys.embedded_replicas(settings.home):
            if made.is_running():
                found.append((made.name, standbys.replica_url(pool_url, standbys.HOST, made.port)))
    return found


def replica_set(pool_url: str) -> ReplicaSet:
    found = current_app.extensions.get("pgrecs_replicas")
    if found is None:
        configured = current_app.config.get("REPLICA_URLS")
        found = current_app.extensions["pgrecs_replicas"] = ReplicaSet(
            lambda: discover(pool_url, configured), current_app.config.get("REPLICA_REFRESH_S", REFRESH_S))
    return found


def failure_kind(exc: BaseException) -> str | None:
    """How a read that failed on a replica is handled: 'down' (the server or the connection failed:
    mark the replica down, retry on the primary), 'retry' (a standby-only refusal: a query cancelled
    for conflicting with replay, 40001, or a write, 25006: retry on the primary), or None (the
    request's own failure, a statement timeout included: no retry)."""
    if isinstance(exc, (psycopg.errors.SerializationFailure, psycopg.errors.ReadOnlySqlTransaction)):
        return "retry"
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return None
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return "down"
    return None
