"""recs.recommend_for_item / recs.recommend_for_user latency at catalog scale, and HTTP throughput.

Synthetic but shaped like a shop: BENCH_ITEMS items (default 100,000) in 200 clusters (category,
brand pool, embedding centroid), BENCH_EVENTS events (default 1,000,000) with power-law item and
user popularity inside each user's home cluster, BENCH_NEIGHBORS neighbours per item and signal
(default 50; semantic, cooccurrence, ease, sequence written straight into pgrecs.item_neighbors, as the
pipelines would), popularity from the events, 384-d halfvec embeddings for MMR.

SQL: p50/p99 of one call each (k=10, seeded placements pdp_similar and home_for_you, MMR and
caps on) over BENCH_QUERIES random anchors / users with history, prepared statements, one
connection. HTTP (BENCH_HTTP=0 skips): gunicorn on 127.0.0.1 as `pgrecs serve` runs it (2 gthread
workers x 4 threads, keep-alive), 8 client threads for BENCH_HTTP_SECONDS per endpoint after a 2 s
warm-up; requests/s, errors, and the CPU per request of gunicorn (master + workers), of the
Postgres server (postmaster + all backends), of the client (this process) and of the whole
machine (/proc/stat, which includes anything else running). The default client is a lean
keep-alive one on raw sockets (~0.1 ms CPU a request; BENCH_HTTP_CLIENT=stdlib for http.client,
~0.3 ms): on 2 cores the load generator's CPU is taken from the server's.

BENCH_BASELINE_REF=<git ref> measures that commit first, in the same run, on the same data, with
the same queries and load: its files are exported (`git archive REF | tar -x`, no network) into a
temporary directory, the populated database is copied (`create database ... template ...`) and
the commit's own sql/ files are applied to the copy in file-name order (its functions over the
current tables, after dropping the current functions nothing depends on), then the SQL timings
run there and gunicorn serves the commit's own pgrecs package (the directory its pyproject.toml
maps the package to) against the copy. The result gains baseline_ref, the baseline_* numbers and `ratios`: p99 current / baseline
for item and user SQL, requests/s current / baseline for HTTP item and user. Within noise means
every p99 ratio <= 1.10 and every requests/s ratio >= 0.90.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from benchmarks.run import (WORK, _with_database, bench_server, exported_tree, fresh_database, package_path,
                            resolve_ref)

ROOT = Path(__file__).resolve().parent.parent
N_ITEMS = int(os.environ.get("BENCH_ITEMS", 100_000))
N_EVENTS = int(os.environ.get("BENCH_EVENTS", 1_000_000))
N_NEIGHBORS = int(os.environ.get("BENCH_NEIGHBORS", 50))
N_QUERIES = int(os.environ.get("BENCH_QUERIES", 300))
N_USERS = max(N_EVENTS // 20, 100)
CLUSTERS = 200
DIM = 384
HTTP = os.environ.get("BENCH_HTTP", "1") != "0"
HTTP_SECONDS = float(os.environ.get("BENCH_HTTP_SECONDS", 15))
HTTP_WORKERS = int(os.environ.get("BENCH_HTTP_WORKERS", 2))
HTTP_THREADS = int(os.environ.get("BENCH_HTTP_THREADS", 4))
HTTP_CLIENT_THREADS = int(os.environ.get("BENCH_HTTP_CLIENT_THREADS", 8))
HTTP_CLIENT = os.environ.get("BENCH_HTTP_CLIENT", "lean")  # lean (raw sockets) | stdlib (http.client)
# BENCH_BASELINE_REF: a git ref measured first, the same way, on a copy of the same database
BASELINE_REF = os.environ.get("BENCH_BASELINE_REF") or None
# "within noise" of the baseline: p99 no more than 10% higher, requests/s no more than 10% lower
NOISE_P99_RATIO_MAX = 1.10
NOISE_RPS_RATIO_MIN = 0.90
# BENCH_REUSE=1 (default) keeps the populated database on the bench server between runs (named by
# its scale) and only re-applies sql/ on the next run; BENCH_REUSE=0 builds a fresh one.
REUSE = os.environ.get("BENCH_REUSE", "1") != "0"
# the neighbour lists written: every neighbour signal of the registry that a seeded placement
# weights (home_for_you: all of them)
NEIGHBOR_SIGNALS_SQL = """
    select s.signal from pgrecs.signals s
    where s.kind = 'neighbors' and exists (select 1 from pgrecs.placements p where p.weights ? s.signal)
    order by s.signal
"""
ITEM_SQL = "select * from recs.recommend_for_item(item => %s::bigint, k => 10, placement => 'pdp_similar')"
USER_SQL = "select * from recs.recommend_for_user(user_id => %s::bigint, k => 10, placement => 'home_for_you')"
LOG = WORK / "bench_recommend_gunicorn.log"


def _populate(conn: psycopg.Connection) -> dict:
    timings = {}
    t0 = time.perf_counter()
    per = max(N_ITEMS // CLUSTERS, 1)
    conn.execute(
        """
        insert into pgrecs.items (external_id, title, brand, category_path, price, stock, margin, active)
        select 'sku-' || g, 'Item ' || g, 'brand-' || ((g / %(per)s) * 7 + g %% 5),
               array['dept-' || ((g / %(per)s) %% 20), 'cat-' || (g / %(per)s)],
               round((5 + random() * 200)::numeric, 2),
               case when random() < 0.05 then 0 else 1 + (random() * 50)::int end,
               round(random()::numeric * 0.5, 2), random() > 0.02
        from generate_series(0, %(n)s - 1) g
        """,
        {"n": N_ITEMS, "per": per},
    )
    conn.execute(
        "insert into pgrecs.users (external_id) select 'user-' || g from generate_series(0, %s - 1) g", (N_USERS,))
    first_item = conn.execute("select min(item_id) from pgrecs.items").fetchone()[0]
    first_user = conn.execute("select min(user_id) from pgrecs.users").fetchone()[0]
    # users draw power-law popular items inside their home cluster (10% anywhere)
    conn.execute(
        """
        insert into pgrecs.events (user_id, item_id, event_type, occurred_at, dedup_key)
        select %(u0)s + u, %(i0)s + least(%(n)s - 1,
                   case when random() < 0.1 then (power(random(), 3) * %(n)s)::int
                        else (u %% %(clusters)s) * %(per)s + (power(random(), 3) * %(per)s)::int end),
               (array['view','view','view','view','view','view','view','click','add_to_cart','purchase'])[1 + (random() * 9)::int],
               now() - random() * interval '90 days', gen_random_uuid()
        from (select (power(random(), 2) * %(users)s)::int %% %(users)s as u from generate_series(1, %(e)s)) s
        """,
        {"u0": first_user, "i0": first_item, "n": N_ITEMS, "clusters": CLUSTERS, "per": per,
         "users": N_USERS, "e": N_EVENTS},
    )
    timings["items_users_events_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    conn.execute(
        """
        insert into pgrecs.item_signals (item_id, popularity, trending, quality_score)
        select i.item_id, coalesce(e.pop, 0), coalesce(e.recent, 0), 0.5 + random() * 0.5
        from pgrecs.items i
        left join (
            select item_id, sum(exp(-extract(epoch from now() - occurred_at) / 86400 / 14)) as pop,
                   count(*) filter (where occurred_at > now() - interval '3 days') as recent
            from pgrecs.events group by item_id
        ) e using (item_id)
        """
    )
    # neighbour lists: same cluster, decreasing scores; indexes rebuilt after the bulk insert
    conn.execute("drop index pgrecs.item_neighbors_ranked; drop index pgrecs.item_neighbors_reverse;"
                 " alter table pgrecs.item_neighbors drop constraint item_neighbors_pkey")
    signals = [r[0] for r in conn.execute(NEIGHBOR_SIGNALS_SQL).fetchall()]
    for shift, signal in enumerate(signals):
        conn.execute(
            """
            insert into pgrecs.item_neighbors (signal, item_id, neighbor_item_id, score, rank)
            select %(signal)s, %(i0)s + g, %(i0)s + c * %(per)s + (o + j * (2 + %(shift)s) + 1) %% %(per)s,
                   1 - j * 0.015 - random() * 0.01, j + 1
            from generate_series(0, %(n)s - 1) g,
                 lateral (select g / %(per)s as c, g %% %(per)s as o) x,
                 generate_series(0, %(k)s - 1) j
            where c * %(per)s + (o + j * (2 + %(shift)s) + 1) %% %(per)s < %(n)s
            """,
            {"signal": signal, "i0": first_item, "per": per, "n": N_ITEMS, "k": min(N_NEIGHBORS, per - 1),
             "shift": shift},
        )
    conn.execute(
        """
        delete from pgrecs.item_neighbors a using pgrecs.item_neighbors b
        where a.ctid > b.ctid and a.signal = b.signal and a.item_id = b.item_id
          and a.neighbor_item_id = b.neighbor_item_id;
        alter table pgrecs.item_neighbors add primary key (tenant_id, signal, item_id, neighbor_item_id);
        create index item_neighbors_ranked on pgrecs.item_neighbors (tenant_id, signal, item_id, rank)
            include (neighbor_item_id, score);
        create index item_neighbors_reverse on pgrecs.item_neighbors (neighbor_item_id);
        """
    )
    timings["neighbors_signals_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model_id = conn.execute(
        "insert into pgrecs.embedding_models (name, version, dimensions, source) values"
        " ('bench-384', '1', %s, 'synthetic') returning model_id", (DIM,)).fetchone()[0]
    conn.execute(
        """
        with centroids as (
            select c, array_agg(random() - 0.5) as v
            from generate_series(0, %(clusters)s - 1) c, generate_series(1, %(dim)s) d group by c
        )
        insert into pgrecs.item_embeddings (item_id, model_id, embedding, text_sha256)
        select i.item_id, %(model)s,
               (select array_agg(x + (random() - 0.5) * 0.6)::halfvec from unnest(ce.v) x),
               '\\x00'
        from pgrecs.items i
        join centroids ce on ce.c = least((i.item_id - %(i0)s) / %(per)s, %(clusters)s - 1)
        """,
        {"clusters": CLUSTERS, "dim": DIM, "model": model_id, "i0": first_item, "per": per},
    )
    conn.execute("update pgrecs.placements set model_id = %s", (model_id,))
    timings["embeddings_s"] = time.perf_counter() - t0
    conn.commit()
    conn.execute("vacuum analyze") if conn.autocommit else None
    return timings


def _backend_cpu_ms(pid: int) -> float | None:
    """CPU time (user + system) of a local server backend so far; None when not readable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _latencies(conn: psycopg.Connection, sql: str, args: list) -> dict:
    times = []
    rows = 0
    for a in args[:20]:  # warm the plan cache and buffers
        conn.execute(sql, (a,), prepare=True).fetchall()
    pid = conn.info.backend_pid
    cpu0 = _backend_cpu_ms(pid)
    for a in args:
        t0 = time.perf_counter()
        rows += len(conn.execute(sql, (a,), prepare=True).fetchall())
        times.append((time.perf_counter() - t0) * 1000)
    cpu1 = _backend_cpu_ms(pid)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2),
        "max_ms": round(times[-1], 2),
        # the server backend's CPU per call: what a call costs, whatever else runs on the machine
        "server_cpu_ms_per_call": round((cpu1 - cpu0) / len(args), 2) if cpu0 is not None and cpu1 is not None
        else None,
        "mean_rows": round(rows / len(args), 2),
        "queries": len(args),
    }


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def _tree_cpu_ms(pid: int) -> dict[int, float]:
    """CPU ms so far of a process and its children (gunicorn master + workers, postmaster + backends)."""
    cpu = {}
    for p in [pid, *_children(pid)]:
        ms = _backend_cpu_ms(p)
        if ms is not None:
            cpu[p] = ms
    return cpu


def _delta_ms(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(ms - before.get(p, 0.0) for p, ms in after.items())


def _machine_cpu_ms() -> float:
    """Busy CPU ms of the whole machine (all cores) so far, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) * 1000 / os.sysconf("SC_CLK_TCK")


def _lean_worker(port: int, key: str, paths: list[str], stop: float, seed: int, out: dict, lock) -> None:
    """A keep-alive HTTP/1.1 client on a raw socket: pre-encoded requests, Content-Length framing."""
    import socket

    rnd = random.Random(seed)
    requests = [f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n\r\n".encode() for p in paths]
    ok = err = 0
    first = None
    sock = None
    buf = b""
    while time.time() < stop:
        try:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buf = b""
            sock.sendall(rnd.choice(requests))
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            while len(buf) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                buf += chunk
            buf = buf[length:]
            if status == 200:
                ok += 1
            else:
                err += 1
                first = first or f"HTTP {status}"
            if b"connection: close" in head.lower():
                sock.close()
                sock = None
        except (OSError, ValueError) as exc:
            err += 1
            first = first or repr(exc)
            if sock is not None:
                sock.close()
            sock = None
    if sock is not None:
        sock.close()
    with lock:
        out["ok"] += ok
        out["errors"] += err
        out["first_error"] = out["first_error"] or first


def _stdlib_worker(port: int, key: str, paths: list[str], stop: float, seed: int, out: dict, lock) -> None:
    """The previous client: http.client per thread (about 3x the client CPU of the lean one)."""
    rnd = random.Random(seed)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    ok = err = 0
    first = None
    while time.time() < stop:
        try:
            c.request("GET", rnd.choice(paths), headers={"X-API-Key": key})
            r = c.getresponse()
            r.read()
            if r.status == 200:
                ok += 1
            else:
                err += 1
                first = first or f"HTTP {r.status}"
        except OSError as exc:
            err += 1
            first = first or repr(exc)
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    with lock:
        out["ok"] += ok
        out["errors"] += err
        out["first_error"] = out["first_error"] or first


def _served_package(tree: Path, python_path: Path) -> tuple[dict, Path]:
    """The environment gunicorn runs with to serve `tree`'s own pgrecs package, and that package's
    directory as a process started with it imports it (checked: a one-line exit when it is another)."""
    env = dict(os.environ, PYTHONPATH=str(python_path))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.run([sys.executable, "-c", "import pathlib, pgrecs; print(pathlib.Path(pgrecs.__file__)"
                           ".resolve().parent)"], cwd=tree, env=env, capture_output=True, text=True)
    imported = Path(proc.stdout.strip()) if proc.returncode == 0 else None
    expected = (python_path / "pgrecs").resolve()
    if imported != expected:
        detail = proc.stderr.strip().splitlines()[-1] if proc.returncode else f"imports {imported}"
        raise SystemExit(f"error: gunicorn would not serve {expected}: {detail}")
    return env, imported


def _http(url: str, key: str, paths: list[str], seconds: float, served: tuple[dict, Path],
          threads: int = HTTP_CLIENT_THREADS, client: str = HTTP_CLIENT, postmaster: int | None = None) -> dict:
    """Requests/s of gunicorn serving one version of the code (`served`, from _served_package: the
    working tree or a baseline commit), with the CPU spent per request by gunicorn, by the Postgres
    server and by this client (and the whole machine)."""
    import resource

    port = 18000 + os.getpid() % 1000
    env, package = served
    env = dict(env, DATABASE_URL=url)
    tree = package.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", str(HTTP_WORKERS), "--threads", str(HTTP_THREADS),
         "--keep-alive", "5", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5", "--log-level", "warning",
         "pgrecs.api:create_app()"],
        cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=open(LOG, "ab"),
    )
    worker = _lean_worker if client == "lean" else _stdlib_worker
    try:
        deadline = time.time() + 30
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.3)
            if time.time() > deadline or proc.poll() is not None:
                raise SystemExit(f"error: gunicorn serving {package} did not answer /healthz (see {LOG})")
        # warm-up: every worker connects, opens its pool and plans its statements
        warm = {"ok": 0, "errors": 0, "first_error": None}
        lock = threading.Lock()
        pool = [threading.Thread(target=worker, args=(port, key, paths, time.time() + 2, 100 + i, warm, lock))
                for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        counts = {"ok": 0, "errors": 0, "first_error": None}
        stop = time.time() + seconds
        gunicorn0 = _tree_cpu_ms(proc.pid)
        pg0 = _tree_cpu_ms(postmaster) if postmaster else {}
        client0 = resource.getrusage(resource.RUSAGE_SELF)
        machine0 = _machine_cpu_ms()
        started = time.time()
        pool = [threading.Thread(target=worker, args=(port, key, paths, stop, i, counts, lock))
                for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.time() - started
        client1 = resource.getrusage(resource.RUSAGE_SELF)
        machine_ms = _machine_cpu_ms() - machine0
        gunicorn_ms = _delta_ms(gunicorn0, _tree_cpu_ms(proc.pid))
        pg_ms = _delta_ms(pg0, _tree_cpu_ms(postmaster)) if postmaster else None
        client_ms = ((client1.ru_utime - client0.ru_utime) + (client1.ru_stime - client0.ru_stime)) * 1000
        n = max(counts["ok"] + counts["errors"], 1)
        return {"requests_per_s": round(counts["ok"] / elapsed, 1), "ok": counts["ok"], "errors": counts["errors"],
                "seconds": round(elapsed, 1), "client": client, "client_threads": threads,
                "gunicorn_workers": HTTP_WORKERS, "gunicorn_threads": HTTP_THREADS, "package": str(package),
                "cpu_ms_per_request": {
                    "gunicorn": round(gunicorn_ms / n, 2),
                    "postgres": round(pg_ms / n, 2) if pg_ms is not None else None,
                    "server_total": round((gunicorn_ms + (pg_ms or 0)) / n, 2),
                    "client": round(client_ms / n, 2),
                    "total": round((gunicorn_ms + (pg_ms or 0) + client_ms) / n, 2),
                    "machine_all_processes": round(machine_ms / n, 2),
                },
                "first_error": counts["first_error"]}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@contextlib.contextmanager
def _database(server: str):
    """A populated benchmark database: a kept warm one (BENCH_REUSE) or a fresh one."""
    if not REUSE:
        with fresh_database(server, "bench_recommend") as url:
            yield url, False
        return
    from psycopg import sql

    from pgrecs import migrate

    name = f"bench_recommend_warm_{N_ITEMS}_{N_EVENTS}_{N_NEIGHBORS}"
    url = _with_database(server, name)
    with psycopg.connect(server, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
    ready = False
    if exists:
        with psycopg.connect(url, autocommit=True) as conn:
            ready = conn.execute("select to_regclass('public.bench_ready') is not null").fetchone()[0]
    if not ready:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    migrate.upgrade(url)  # re-applies sql/ at head, so a warm database runs the current functions
    yield url, ready


# The baseline's files define their own functions over the current tables, and `create or replace`
# cannot change a function's result type: every current function nothing depends on is dropped
# first. The ones a trigger, policy, view or index uses stay, and the baseline's files replace them.
_DROP_REPLACEABLE_FUNCTIONS = """
do $$
declare
    f regprocedure;
begin
    for f in
        select p.oid::regprocedure from pg_catalog.pg_proc as p
        join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
        where n.nspname in ('pgrecs', 'recs') and p.prokind in ('f', 'p')
    loop
        begin
            execute format('drop routine %s', f);
        exception when dependent_objects_still_exist then
            null;
        end;
    end loop;
end
$$"""


@contextlib.contextmanager
def _baseline_database(server: str, url: str, tree: Path, ref: str):
    """A copy of the populated database at `url` with the baseline commit's sql/ files applied in
    file-name order (over the current tables, the current functions dropped where nothing depends
    on them); dropped afterwards. A file that fails exits with one line."""
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict

    source = conninfo_to_dict(url)["dbname"]
    name = f"{source[:54]}_baseline"
    with psycopg.connect(server, autocommit=True) as conn:
        copy = "create database {} template {}"
        if conn.info.server_version >= 150000:
            copy += " strategy file_copy"  # one file copy instead of WAL-logging every block
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL(copy).format(sql.Identifier(name), sql.Identifier(source)))
    base_url = _with_database(server, name)
    try:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(_DROP_REPLACEABLE_FUNCTIONS)
            for path in sorted((tree / "sql").glob("*.sql")):
                try:
                    with conn.transaction():
                        conn.execute(path.read_text())
                except psycopg.Error as exc:
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise SystemExit(f"error: baseline {ref}: sql/{path.name} fails on the current schema: "
                                     f"{first}") from None
        yield base_url
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def _connect(url: str) -> psycopg.Connection:
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(url, autocommit=True)
    conn.execute("set pgrecs.tenant = 'default'")
    register_vector(conn)
    return conn


def _measure(url: str, item_ids: list[int], users: list[int], http: dict | None,
             served: tuple[dict, Path]) -> dict:
    """The SQL latencies, then (with `http`: key and paths) the HTTP throughput of one version of the code."""
    out: dict = {}
    with _connect(url) as conn:
        out["sql_recommend_for_item"] = _latencies(conn, ITEM_SQL, item_ids)
        out["sql_recommend_for_user"] = _latencies(conn, USER_SQL, users)
        out["sql_recommend_for_item_explain"] = _latencies(
            conn, "select * from recs.recommend_for_item(item => %s::bigint, k => 10, explain => true)",
            item_ids[:100])
        postmaster = _ppid(conn.info.backend_pid)
    print(json.dumps(out), file=sys.stderr, flush=True)  # SQL numbers survive an HTTP failure
    if http:
        for name, paths in (("http_item", http["item_paths"]), ("http_user", http["user_paths"])):
            out[name] = _http(url, http["key"], paths, HTTP_SECONDS, served, postmaster=postmaster)
    return out


def _code(tree: Path) -> str:
    return subprocess.run(["git", "-C", str(tree), "describe", "--always", "--dirty"], capture_output=True,
                          text=True).stdout.strip()


def _comparison(result: dict) -> dict:
    """current / baseline: p99 of the SQL calls, requests/s of the HTTP endpoints (when measured)."""
    ratios = {}
    for name, key in (("sql_item_p99", "sql_recommend_for_item"), ("sql_user_p99", "sql_recommend_for_user")):
        ratios[name] = round(result[key]["p99_ms"] / result[f"baseline_{key}"]["p99_ms"], 3)
    for name, key in (("http_item_requests_per_s", "http_item"), ("http_user_requests_per_s", "http_user")):
        if key in result and result[f"baseline_{key}"]["requests_per_s"]:
            ratios[name] = round(result[key]["requests_per_s"] / result[f"baseline_{key}"]["requests_per_s"], 3)
    return ratios


def _within_noise(ratios: dict) -> dict[str, bool]:
    """Each ratio within noise: a p99 ratio <= NOISE_P99_RATIO_MAX, a requests/s ratio >= NOISE_RPS_RATIO_MIN."""
    return {k: v <= NOISE_P99_RATIO_MAX if k.endswith("_p99") else v >= NOISE_RPS_RATIO_MIN
            for k, v in ratios.items()}


def run() -> dict:
    result: dict = {"items": N_ITEMS, "events": N_EVENTS, "neighbors_per_item_per_signal": N_NEIGHBORS,
                    "code": _code(ROOT)}
    with contextlib.ExitStack() as stack:
        baseline_tree = stack.enter_context(exported_tree(BASELINE_REF)) if BASELINE_REF else None
        server = stack.enter_context(bench_server())
        url, warm = stack.enter_context(_database(server))
        with _connect(url) as conn:
            result["reused_warm_database"] = warm
            if not warm:
                conn.autocommit = False
                result["setup"] = {k: round(v, 1) for k, v in _populate(conn).items()}
                conn.autocommit = True
                conn.execute("vacuum analyze")
                conn.execute("create table if not exists public.bench_ready ()")  # marks it warm for reuse
            conn.execute("select setseed(0.7)")
            rnd = random.Random(7)
            item_ids = [r[0] for r in conn.execute(
                "select item_id from pgrecs.items where active order by random() limit %s", (N_QUERIES,))]
            users = [r[0] for r in conn.execute(
                "select user_id from (select distinct user_id from pgrecs.events) u order by random() limit %s",
                (N_QUERIES,))]
            result["history_events_per_sampled_user_mean"] = conn.execute(
                "select round(avg(c), 1)::float from (select count(*) c from pgrecs.events where user_id = any(%s)"
                " group by user_id) x", (users,)).fetchone()[0]
            rnd.shuffle(item_ids)
            http = None
            if HTTP:
                from pgrecs.api_keys import create_key

                ext_items = [r[0] for r in conn.execute(
                    "select external_id from pgrecs.items where item_id = any(%s)", (item_ids,))]
                ext_users = [r[0] for r in conn.execute(
                    "select external_id from pgrecs.users where user_id = any(%s)", (users,))]
                # created before the copy, so the baseline database holds the same key
                http = {"key": create_key(conn, "default", ["read"], "bench_recommend")[1],
                        "item_paths": [f"/items/{e}/recommendations?k=10" for e in ext_items],
                        "user_paths": [f"/users/{e}/recommendations?k=10" for e in ext_users]}
        if baseline_tree is not None:
            # the baseline first: the same queries and load on a copy of the same data
            result["baseline_ref"] = BASELINE_REF
            result["baseline_commit"] = resolve_ref(BASELINE_REF)
            served = _served_package(baseline_tree, package_path(baseline_tree, baseline_tree.parent / "pythonpath"))
            with _baseline_database(server, url, baseline_tree, BASELINE_REF) as base_url:
                measured = _measure(base_url, item_ids, users, http, served)
            result.update({f"baseline_{k}": v for k, v in measured.items()})
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="pythonpath-current-", dir=WORK))
        result.update(_measure(url, item_ids, users, http, _served_package(ROOT, package_path(ROOT, Path(scratch)))))
    item_p99 = result["sql_recommend_for_item"]["p99_ms"]
    user_p99 = result["sql_recommend_for_user"]["p99_ms"]
    result.update({
        "metric": "recommend_for_user / recommend_for_item p99 in SQL (k=10)",
        "value": max(item_p99, user_p99),
        "unit": "ms",
        "target": "<= 30 ms",
        "met": max(item_p99, user_p99) <= 30,
        "note": f"item p50 {result['sql_recommend_for_item']['p50_ms']} / p99 {item_p99} ms; "
                f"user p50 {result['sql_recommend_for_user']['p50_ms']} / p99 {user_p99} ms",
    })
    if HTTP:
        result["note"] += (f"; HTTP item {result['http_item']['requests_per_s']} req/s "
                           f"({result['http_item']['errors']} errors), user {result['http_user']['requests_per_s']} "
                           f"req/s ({result['http_user']['errors']} errors)")
    if BASELINE_REF:
        ratios = result["ratios"] = _comparison(result)
        result["ratios_within_noise"] = _within_noise(ratios)
        within = result["within_noise"] = all(result["ratios_within_noise"].values())
        base = max(result["baseline_sql_recommend_for_item"]["p99_ms"],
                   result["baseline_sql_recommend_for_user"]["p99_ms"])
        result.update({
            "baseline": base,
            "ratio": round(result["value"] / base, 3),
            "target": f"<= 30 ms, and within noise of {BASELINE_REF}: p99 current / baseline <= "
                      f"{NOISE_P99_RATIO_MAX:.2f} (item and user SQL), requests/s current / baseline >= "
                      f"{NOISE_RPS_RATIO_MIN:.2f} (HTTP item and user)",
            "met": result["met"] and within,
        })
        result["note"] += (f"; vs {BASELINE_REF} (same run, same data): p99 ratio item {ratios['sql_item_p99']}, "
                           f"user {ratios['sql_user_p99']}")
        if HTTP:
            result["note"] += (f"; req/s ratio item {ratios.get('http_item_requests_per_s')}, "
                               f"user {ratios.get('http_user_requests_per_s')}")
        result["note"] += " (within noise)" if within else " (NOT within noise)"
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
