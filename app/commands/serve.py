"""`pgrecs serve`: the HTTP API under gunicorn (the Flask development server where gunicorn is missing)."""

from __future__ import annotations

import click

from pgrecs.cli import settings_from, url_from


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
@click.pass_context
def serve(ctx, host, port, workers, threads, model):
    """Serve the HTTP API (recommendations, similar items, search, items, events, health, console)."""
    import psycopg

    from pgrecs.api import create_app
    from pgrecs.db import connect
    from pgrecs.errors import PgrecsError
    from pgrecs.embeddings.models import load_spec

    settings = settings_from(ctx)
    settings = settings.replace(database_url=url_from(ctx), embedding_model=model or settings.embedding_model)
    try:
        with connect(settings.database_url) as conn:
            load_spec(conn, settings.embedding_model)  # an unknown model is one line now, not a 503 per worker
    except psycopg.errors.UndefinedTable:
        raise PgrecsError("the database has no pgrecs schema yet: run pgrecs migrate") from None
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
