"""Items: upsert one item (PUT /items/<external_id>) and its similar items (GET /items/<external_id>/similar)."""

from __future__ import annotations

import json

import psycopg
from apiflask import APIBlueprint, abort
from marshmallow import RAISE
from flask import current_app

from pgrecs.api.database import get_conn, replica_read
from pgrecs.api.schemas import ItemBody, ItemOut, SemanticQuery, SimilarOut, filters_json, ok

bp = APIBlueprint("items", __name__)


def model_name() -> str | None:
    """The model this process serves (EMBEDDING_MODEL config; the default model when unset)."""
    return current_app.config.get("EMBEDDING_MODEL")


def rows_to_results(rows) -> list[dict]:
    return [{"item_id": item_id, "external_id": external_id, "title": title, "score": round(float(score), 6),
             "rank": rank} for item_id, external_id, title, score, rank in rows]


@bp.put("/items/<path:external_id>")
@bp.input(ItemBody, location="json", arg_name="record")
@bp.doc(responses=ok(ItemOut, "Updated or unchanged", 200, **{"201": {"description": "Inserted",
        "content": {"application/json": {"schema": ItemOut}}}}))
def put_item(external_id: str, record: dict):
    """Insert or update one item through the loader's validation; its embedding follows via the queue.

    The fields' values are judged by the loader: a refused item (bad id, unreadable `active`) is a
    400 naming the reasons; an optional field that does not parse comes back in `warnings`.
    """
    from pgrecs.ingest import ingest_records

    if "external_id" in record and str(record["external_id"]) != external_id:
        abort(400, message="external_id in the body differs from the URL")
    record = {**record, "external_id": external_id}
    conn = get_conn()
    result = ingest_records(conn, "items", [record], source="api")
    if result.rejected:
        reasons = sorted({r.reason for r in result.rejects})
        abort(400, message=f"item rejected: {', '.join(reasons)}", detail={"reasons": reasons})
    status = "inserted" if result.inserted else "updated" if result.updated else "unchanged"
    item_id = result.ids.get(1)
    if item_id is None:
        item_id = conn.execute(
            "select item_id from pgrecs.items where tenant_id = pgrecs.current_tenant() and external_id = %s",
            (external_id,)).fetchone()[0]
    queued = conn.execute("select count(*) > 0 from pgrecs.embedding_queue where item_id = %s",
                          (item_id,)).fetchone()[0]
    warnings = [{"field": w.field, "reason": w.reason} for w in result.warnings]
    return {"item_id": item_id, "external_id": external_id, "status": status, "embedding_queued": queued,
            "warnings": warnings}, (
        201 if status == "inserted" else 200)


@bp.get("/items/<path:external_id>/similar")
@bp.input(SemanticQuery, location="query", arg_name="query", unknown=RAISE)
@bp.doc(responses=ok(SimilarOut, "The k nearest items by embedding", **{"404": "Unknown item"}))
@replica_read
def similar(external_id: str, query: dict):
    """The k items most similar to this one (semantic), with optional filters."""
    k = query["k"]
    filters = filters_json(query)
    conn = get_conn()
    row = conn.execute(
        "select item_id from pgrecs.items "
        "where tenant_id = pgrecs.current_tenant() and external_id = %s",
        (external_id,)).fetchone()
    if row is None:
        abort(404, message=f"unknown item: {external_id}")
    try:
        rows = conn.execute(
            """
            select s.item_id, s.external_id, i.title, s.score, s.rank
            from recs.similar_items(item_id => %s, k => %s, filters => %s::jsonb, model => %s) as s
            join pgrecs.items as i on i.item_id = s.item_id
            order by s.rank
            """,
            (row[0], k, json.dumps(filters), model_name())).fetchall()
    except (psycopg.errors.InvalidParameterValue, psycopg.errors.NoDataFound) as exc:
        conn.rollback()
        abort(400, message=str(exc.diag.message_primary))
    return {"item_id": row[0], "external_id": external_id, "k": k, "filters": filters,
            "results": rows_to_results(rows)}
