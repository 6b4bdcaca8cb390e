"""Items: upsert one item (PUT /items/<external_id>) and its similar items (GET /items/<external_id>/similar)."""

from __future__ import annotations

import json

from apiflask import APIBlueprint, abort
from marshmallow import RAISE

from pgrecs.api.common import RESULT_COLUMNS, model_name, rows_to_results
from pgrecs.api.database import get_conn, replica_read
from pgrecs.api.schemas import ItemBody, ItemOut, SemanticQuery, SimilarOut, filters_json, ok

bp = APIBlueprint("items", __name__)


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
    # an unchanged item has no id in the result: its id by external id
    item_id, queued = conn.execute(
        "select a.item_id, exists (select 1 from pgrecs.embedding_queue as q where q.item_id = a.item_id)"
        " from (select coalesce(%s::bigint, recs.item_id(item => %s)) as item_id) as a",
        (result.ids.get(1), external_id)).fetchone()
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
    # one statement: the item's own id (P0002 "unknown item: X" when unknown, a 404) and its neighbours
    rows = get_conn().execute(
        f"""
        select a.item_id, {RESULT_COLUMNS}
        from recs.item_id(item => %(item)s) as a (item_id)
        left join lateral recs.similar_items(item => %(item)s, k => %(k)s, filters => %(filters)s::jsonb,
                                             model => %(model)s) as s on true
        order by s.rank
        """,
        {"item": external_id, "k": k, "filters": json.dumps(filters), "model": model_name()}).fetchall()
    return {"item_id": rows[0][0], "external_id": external_id, "k": k, "filters": filters,
            "results": rows_to_results(row[1:] for row in rows if row[1] is not None)}
