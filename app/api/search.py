"""Semantic search: GET /search?q= (the query embedded in-process, one model per process)."""

from __future__ import annotations

import json

import psycopg
from apiflask import APIBlueprint, abort
from flask import request
from pgvector import HalfVector

from app.api.database import get_conn
from app.api.items import model_name, parse_filters, parse_k, rows_to_results
from app.errors import PgrecsError
from app.embeddings.models import get_encoder, load_spec

bp = APIBlueprint("search", __name__)

Q_MAX = 1000


@bp.get("/search")
def search():
    """Items whose embedding is nearest to the embedded query text."""
    q = (request.args.get("q") or "").strip()
    if not q:
        abort(400, message="q is required")
    if len(q) > Q_MAX:
        abort(400, message=f"q must be at most {Q_MAX} characters")
    k = parse_k(request.args)
    filters = parse_filters(request.args)
    conn = get_conn()
    try:
        spec = load_spec(conn, model_name())
        vector = get_encoder(spec.source).encode([q])[0]
    except PgrecsError as exc:
        abort(503, message=str(exc))
    try:
        rows = conn.execute(
            """
            select s.item_id, s.external_id, i.title, s.score, s.rank
            from recs.search_by_vector(query_embedding => %s, k => %s, filters => %s::jsonb, model => %s) as s
            join pgrecs.items as i on i.item_id = s.item_id
            order by s.rank
            """,
            (HalfVector(vector), k, json.dumps(filters), spec.name)).fetchall()
    except (psycopg.errors.InvalidParameterValue, psycopg.errors.NoDataFound) as exc:
        conn.rollback()
        abort(400, message=str(exc.diag.message_primary))
    return {"q": q, "k": k, "model": spec.name, "filters": filters, "results": rows_to_results(rows)}
