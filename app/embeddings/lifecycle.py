"""Promotion, rollback and drop of embedding models (`pgrecs models promote|rollback|drop`).

The work is SQL (sql/036_model_lifecycle.sql), one transaction each: the default model switches
with its semantic lists, so a reader sees the old model or the new one, never a mix. Refusals
(an incomplete or unevaluated candidate, a failed gate, dropping the active model) come back as
one-line errors.
"""

from __future__ import annotations

import psycopg

from pgrecs.db import connect
from pgrecs.errors import PgrecsError

REFUSALS = (psycopg.errors.NoDataFound, psycopg.errors.InvalidParameterValue,
            psycopg.errors.ObjectNotInPrerequisiteState)


def _call(url: str | None, tenant: str, query: str, params: tuple):
    with connect(url, tenant=tenant) as conn:
        try:
            return conn.execute(query, params).fetchone()
        except REFUSALS as exc:
            raise PgrecsError(exc.diag.message_primary) from None


def promote(url: str | None, tenant: str, name: str, force: bool = False) -> tuple[str, str, int]:
    """(previous model, new model, semantic list rows switched)."""
    return _call(url, tenant, "select * from pgrecs.promote_model(model => %s, forced => %s)", (name, force))


def rollback(url: str | None, tenant: str) -> tuple[str, str, int]:
    """(rolled-back model, restored model, semantic list rows switched)."""
    return _call(url, tenant, "select * from pgrecs.rollback_model()", ())


def drop(url: str | None, tenant: str, name: str) -> tuple[int, str]:
    """(embeddings removed, the model's source, whose files stay)."""
    with connect(url, tenant=tenant) as conn:
        row = conn.execute("select source from pgrecs.embedding_models where name = %s", (name,)).fetchone()
    removed = _call(url, tenant, "select pgrecs.drop_model(model => %s)", (name,))[0]
    return removed, row[0]
