"""`pgrecs serve`: the HTTP API under gunicorn (the Flask development server where gunicorn is missing).

With --watch, `pgrecs embed --watch` runs beside it as a child process, so an item written through
the API is embedded, and has similar items, seconds later.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys

import click

from pgrecs.cli import settings_from, tenant_from, url_from
from pgrecs.errors import PgrecsError

PORT_HINT = "choose another with --port"


def ensure_port_free(host: str, port: int, hint: str = PORT_HINT) -> None:
    """Refuse a port another process listens on with one line, before anything starts (gunicorn
    would otherwise retry and log each failure)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        # the same option gunicorn binds with: a port left in TIME_WAIT counts as free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PgrecsError(f"port {port} is in use; {hint}") from None
            if exc.errno == errno.EACCES:
                raise PgrecsError(f"port {port} needs privileges to bind; {hint}") from None
            raise PgrecsError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


@contextlib.contextmanager
def embedding_watcher(url: str, tenant: str):
    """`pgrecs embed --watch` in a child process for the duration of the block, stopped when the
    block ends (the server stopped by Ctrl-C or a signal)."""
    # the URL goes by the environment, not the command line, where `ps` would show its password;
    # a session of its own: Ctrl-C stops the server, and the server stops the watcher
    env = {**os.environ, "DATABASE_URL": url}
    child = subprocess.Popen([sys.executable, "-m", "pgrecs", "--tenant", tenant, "embed", "--watch"], env=env,
                             start_new_session=True)
    try:
        yield child
    finally:
        # gunicorn's arbiter reaps any child that exits (and logs it as a failed worker); it has
        # returned by now, so this process reaps the watcher itself
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="gunicorn worker processes (each loads the query model once, on its first /search). "
                   "One per core: Postgres does most of a request's work and needs the rest.")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64),
              help="Threads per worker (gthread): a thread waits on Postgres while another runs Python.")
@click.option("--model", default=None, metavar="NAME",
              help="Registered model that embeds /search queries (default: $PGRECS_EMBEDDING_MODEL, else the "
                   "default model).")
@click.option("--watch", is_flag=True,
              help="Also run the embedding watcher (`pgrecs embed --watch`) beside the server, so items written "
                   "through the API are embedded within seconds.")
@click.pass_context
def serve(ctx, host, port, workers, threads, model, watch):
    """Serve the HTTP API (recommendations, similar items, search, items, events, health, console)."""
    import psycopg

    from pgrecs.db import connect
    from pgrecs.embeddings.models import load_spec

    ensure_port_free(host, port)
    settings = settings_from(ctx)
    settings = settings.replace(database_url=url_from(ctx), embedding_model=model or settings.embedding_model)
    try:
        with connect(settings.database_url) as conn:
            load_spec(conn, settings.embedding_model)  # an unknown model is one line now, not a 503 per worker
    except psycopg.errors.UndefinedTable:
        raise PgrecsError("the database has no pgrecs schema yet: run pgrecs migrate") from None
    with embedding_watcher(settings.database_url, tenant_from(ctx)) if watch else contextlib.nullcontext():
        _serve(settings, host, port, workers, threads)


def _serve(settings, host: str, port: int, workers: int, threads: int) -> None:
    from pgrecs.api import create_app

    try:
        from gunicorn.app.base import BaseApplication
    except ImportError:
        click.echo("gunicorn not available; using the Flask development server", err=True)
        create_app(settings=settings).run(host=host, port=port, threaded=True)
        return

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")
            # keep-alive connections from clients and proxies: no TCP handshake per request
            self.cfg.set("keepalive", 5)
            # no gunicorn access log: the app writes one structured JSON line per request
            # (pgrecs.api.observability), a second plain-text line only cost CPU
            # each worker runs its own readiness check (which loads the query model) before it
            # takes requests, so no /search waits seconds for the model under load
            self.cfg.set("post_worker_init", _check_worker_ready)

        def load(self):
            return create_app(settings=settings)

    click.echo(f"serving on http://{host}:{port} ({workers} workers x {threads} threads)", err=True)
    Server().run()


def _check_worker_ready(worker) -> None:
    response = worker.wsgi.test_client().get("/readyz")
    if response.status_code != 200:
        worker.log.warning("worker not ready yet: %s", response.get_json())


COMMANDS = [serve]
