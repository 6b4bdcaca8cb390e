"""Items: upsert one item (PUT /items/<external_id>) and its similar items (GET /items/<external_id>/similar)."""

from __future__ import annotations

import json

import psycopg
from apiflask import APIBlueprint, abort
from flask import current_app, request

from app.api.database import get_conn

bp = APIBlueprint("items", __name__)

K_MAX = 100


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    abort(400, message=f"{name} must be true or false")


def _number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        abort(400, message=f"{name} must be a number")
    if number != number or number in (float("inf"), float("-inf")) or abs(number) > 1e12:
        abort(400, message=f"{name} must be a finite number")
    return number


def parse_k(args) -> int:
    raw = args.get("k", "10")
    try:
        k = int(raw)
    except ValueError:
        abort(400, message="k must be an integer")
    if not 1 <= k <= K_MAX:
        abort(400, message=f"k must be between 1 and {K_MAX}")
    return k


def parse_filters(args) -> dict:
    """Query-string filters -> the jsonb filter object of recs.similar_items / recs.search_by_vector."""
    filters: dict = {}
    if args.get("category"):
        category = args["category"].strip()
        if len(category) > 1000:
            abort(400, message="category is too long")
        filters["category"] = category
    for name in ("price_min", "price_max"):
        if args.get(name):
            filters[name] = _number(name, args[name])
    if "price_min" in filters and "price_max" in filters and filters["price_min"] > filters["price_max"]:
        abort(400, message="price_min must not exceed price_max")
    if args.get("in_stock"):
        filters["in_stock"] = _bool("in_stock", args["in_stock"])
    return filters


def model_name() -> str | None:
    """The model this process serves (EMBEDDING_MODEL config; the default model when unset)."""
    return current_app.config.get("EMBEDDING_MODEL")


def rows_to_results(rows) -> list[dict]:
    return [{"item_id": item_id, "external_id": external_id, "title": title, "score": round(float(score), 6),
             "rank": rank} for item_id, external_id, title, score, rank in rows]


@bp.put("/items/<path:external_id>")
def put_item(external_id: str):
    """Insert or update one item through the loader's validation; its embedding follows via the queue."""
    from app.ingest import ingest_records

    record = request.get_json(silent=True)
    if not isinstance(record, dict):
        abort(400, message="the body must be a JSON object of item fields")
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
    return {"item_id": item_id, "external_id": external_id, "status": status, "embedding_queued": queued}, (
        201 if status == "inserted" else 200)


@bp.get("/items/<path:external_id>/similar")
def similar(external_id: str):
    """The k items most similar to this one (semantic), with optional filters."""
    k = parse_k(request.args)
    filters = parse_filters(request.args)
    conn = get_conn()
    row = conn.execute(
        "select item_id from pgrecs.items "
        "where tenant_id = coalesce(nullif(current_setting('pgrecs.tenant', true), ''), 'default') and external_id = %s",
        (external_id,)).fetchone()
    if row is None:
        abort(404, message=f"unknown item {external_id!r}")
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
