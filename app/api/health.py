"""Liveness and readiness."""

from __future__ import annotations

from apiflask import APIBlueprint

from app.api.database import get_conn

bp = APIBlueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is up."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    """The database answers."""
    get_conn().execute("select 1")
    return {"status": "ready"}
