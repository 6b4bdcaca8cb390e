"""Liveness and readiness (no API key: for load balancers and orchestrators)."""

from __future__ import annotations

import psycopg
from apiflask import APIBlueprint
from flask import current_app

from pgrecs.api.database import get_conn
from pgrecs.api.schemas import HealthOut, ReadyOut, ok
from pgrecs.errors import PgrecsError, first_line

bp = APIBlueprint("health", __name__)


@bp.get("/healthz")
@bp.doc(responses=ok(HealthOut, "The process is up"))
def healthz():
    """The process is up."""
    return {"status": "ok"}


@bp.get("/readyz")
@bp.doc(responses=ok(ReadyOut, "Ready: database, migrations and model checked",
                     **{"503": "Not ready: the detail names the failed check"}))
def readyz():
    """The database answers, its schema is at the code's migration head, and the query model is loaded.

    `replicas` reports each read replica's state, replay position and lag (seconds and bytes behind
    the primary); a replica that is down does not make the API unready.

    The model is loaded into this process (and cached) by the first call, so a worker reports ready
    only once /search can answer without a cold start. 503 problem+json naming the failed check otherwise.
    """
    from apiflask import abort

    from pgrecs.embeddings.models import encoder_for, load_spec
    from pgrecs.migrate import head_revision

    checks: dict[str, str] = {}
    try:
        conn = get_conn()
        conn.execute("select 1")
        checks["database"] = "ok"
    except psycopg.Error as exc:
        abort(503, message="database unreachable", detail={"database": first_line(exc)})
    revision = conn.execute("select version_num from public.alembic_version").fetchone()
    head = _head(head_revision)
    if revision is None or revision[0] != head:
        abort(503, message="database schema is not at the migration head (run pgrecs migrate)",
              detail={"schema": revision[0] if revision else None, "head": head})
    checks["migrations"] = head
    try:
        spec = load_spec(conn, current_app.config.get("EMBEDDING_MODEL"))
        conn.commit()
        encoder_for(spec)  # loads once per process, then a dictionary look-up
        checks["model"] = spec.name
    except PgrecsError as exc:
        abort(503, message=f"query model not loadable: {exc}")
    conn.commit()
    from pgrecs.api.database import replica_set
    from pgrecs.replicas import WAL_POSITION

    # replicas never make the API unready (the primary serves every read), they are reported
    lsn = conn.execute(f"select {WAL_POSITION}").fetchone()[0]
    conn.commit()
    return {"status": "ready", "checks": checks, "replicas": replica_set().states(lsn)}


_HEAD: list[str] = []


def _head(find) -> str:
    if not _HEAD:
        _HEAD.append(find())
    return _HEAD[0]
