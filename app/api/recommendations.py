"""Recommendations over HTTP: one item's neighbours, a user's picks, more-like-these.

GET  /items/<external_id>/recommendations
GET  /users/<external_id>/recommendations
POST /recommendations   {"examples": [...], "negative_examples": [...], "context": [...], "filters": {...}}

All take `placement`, `k` (1..100) and filters (query parameters category, brand, price_min,
price_max, in_stock, or a JSON object in `filters`). The ranking is done by the STABLE SQL
functions recs.recommend_for_item / recs.recommend_for_user / recs.recommend; this module only
validates, logs the served list in pgrecs.recommendation_requests and returns its request_id,
which later events can carry (POST /events, field request_id).
"""

from __future__ import annotations

import json
import math

import psycopg
from apiflask import APIBlueprint, abort
from flask import request
from psycopg.types.json import Jsonb

from app.api.database import get_conn

bp = APIBlueprint("recommendations", __name__)

K_MAX = 100
LIST_MAX = 100
FILTER_KEYS = {"category", "brand", "brands", "exclude_brands", "price_min", "price_max", "in_stock", "exclude"}


def _k(value) -> int:
    if value is None:
        return 10
    if isinstance(value, bool):
        abort(400, message="k must be an integer")
    try:
        k = int(value)
    except (TypeError, ValueError):
        abort(400, message="k must be an integer")
    if isinstance(value, float) and value != k:
        abort(400, message="k must be an integer")
    if not 1 <= k <= K_MAX:
        abort(400, message=f"k must be between 1 and {K_MAX}")
    return k


def _placement(value, default: str) -> str:
    if value is None or value == "":
        return default
    if not isinstance(value, str) or len(value) > 63:
        abort(400, message="placement must be a placement name")
    return value


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    abort(400, message=f"{name} must be true or false")


def _number(name: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        abort(400, message=f"{name} must be a number")
    if not math.isfinite(number) or abs(number) > 1e12:
        abort(400, message=f"{name} must be a finite number")
    return number


def _filters_object(filters) -> dict:
    """Checks the JSON filter object's shape here so that errors are 400s with a clear message."""
    if not isinstance(filters, dict):
        abort(400, message="filters must be a JSON object")
    unknown = sorted(set(filters) - FILTER_KEYS)
    if unknown:
        abort(400, message=f"unknown filter: {unknown[0]} (known: {', '.join(sorted(FILTER_KEYS))})")
    return filters


def query_filters(args) -> dict:
    """Filters from the query string: `filters=<json>` plus the common ones as plain parameters."""
    filters: dict = {}
    if args.get("filters"):
        try:
            filters = json.loads(args["filters"])
        except ValueError:
            abort(400, message="filters must be a JSON object")
        filters = dict(_filters_object(filters))
    for name in ("category", "brand"):
        if args.get(name):
            if len(args[name]) > 1000:
                abort(400, message=f"{name} is too long")
            filters[name] = args[name]
    for name in ("price_min", "price_max"):
        if args.get(name):
            filters[name] = _number(name, args[name])
    if args.get("in_stock"):
        filters["in_stock"] = _bool("in_stock", args["in_stock"])
    return filters


def _explain(value) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    return _bool("explain", str(value))


def _run(function_sql: str, params: dict, *, endpoint: str, placement: str, k: int, filters: dict,
         user_id: int | None, anchors: list[int]) -> dict:
    conn = get_conn()
    try:
        with conn.transaction():
            rows = conn.execute(
                "select r.item_id, r.external_id, i.title, r.score, r.rank, r.contributions, r.reasons"
                f" from {function_sql} r join pgrecs.items i on i.item_id = r.item_id order by r.rank",
                params,
            ).fetchall()
    except psycopg.errors.NoDataFound as exc:
        abort(404, message=exc.diag.message_primary or "not found")
    except (psycopg.errors.InvalidParameterValue, psycopg.errors.InvalidTextRepresentation,
            psycopg.errors.NumericValueOutOfRange) as exc:
        abort(400, message=exc.diag.message_primary or "bad parameter")
    request_id = conn.execute(
        "insert into pgrecs.recommendation_requests"
        " (tenant_id, endpoint, placement, user_id, anchor_item_ids, k, filters, item_ids, scores)"
        " values (pgrecs.current_tenant(), %s, %s, %s, %s, %s, %s, %s, %s) returning request_id",
        (endpoint, placement, user_id, anchors, k, Jsonb(filters), [r[0] for r in rows],
         [float(r[3]) for r in rows]),
    ).fetchone()[0]
    conn.commit()
    return {
        "request_id": str(request_id),
        "placement": placement,
        "k": k,
        "items": [
            {"item_id": external_id, "internal_id": item_id, "title": title, "score": round(float(score), 6),
             "rank": rank, "reasons": reasons, "contributions": contributions}
            for item_id, external_id, title, score, rank, contributions, reasons in rows
        ],
    }


def _item_id(external_id: str) -> int:
    row = get_conn().execute(
        "select item_id from pgrecs.items where tenant_id = pgrecs.current_tenant() and external_id = %s",
        (external_id,),
    ).fetchone()
    if row is None:
        abort(404, message=f"unknown item: {external_id}")
    return row[0]


@bp.get("/items/<path:external_id>/recommendations")
@bp.doc(summary="Recommendations next to one item",
        description="Query: placement (default pdp_similar), k (1..100), explain, category, brand, price_min, "
                    "price_max, in_stock, filters (JSON object).")
def item_recommendations(external_id: str):
    args = request.args
    k = _k(args.get("k"))
    placement = _placement(args.get("placement"), "pdp_similar")
    filters = query_filters(args)
    explain = _explain(args.get("explain"))
    item_id = _item_id(external_id)
    return _run(
        "recs.recommend_for_item(item => %(item)s::bigint, k => %(k)s, placement => %(placement)s,"
        " filters => %(filters)s, explain => %(explain)s)",
        {"item": item_id, "k": k, "placement": placement, "filters": Jsonb(filters), "explain": explain},
        endpoint="item", placement=placement, k=k, filters=filters, user_id=None, anchors=[item_id],
    )


@bp.get("/users/<path:external_id>/recommendations")
@bp.doc(summary="Personal recommendations for a user",
        description="From the user's live event history. Query: placement (default home_for_you), k, explain, "
                    "filters as for items.")
def user_recommendations(external_id: str):
    args = request.args
    k = _k(args.get("k"))
    placement = _placement(args.get("placement"), "home_for_you")
    filters = query_filters(args)
    explain = _explain(args.get("explain"))
    row = get_conn().execute(
        "select user_id from pgrecs.users where tenant_id = pgrecs.current_tenant() and external_id = %s",
        (external_id,),
    ).fetchone()
    if row is None:
        abort(404, message=f"unknown user: {external_id}")
    return _run(
        "recs.recommend_for_user(user_id => %(user)s::bigint, k => %(k)s, placement => %(placement)s,"
        " filters => %(filters)s, explain => %(explain)s)",
        {"user": row[0], "k": k, "placement": placement, "filters": Jsonb(filters), "explain": explain},
        endpoint="user", placement=placement, k=k, filters=filters, user_id=row[0], anchors=[],
    )


def _external_list(body: dict, name: str) -> list[str]:
    value = body.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        abort(400, message=f"{name} must be a list of item ids (strings)")
    if len(value) > LIST_MAX:
        abort(400, message=f"{name} holds at most {LIST_MAX} items")
    return value


@bp.post("/recommendations")
@bp.doc(summary="More like these, less like those",
        description='Body: {"examples": [item ids], "negative_examples": [item ids], "context": [item ids, '
                    'e.g. the cart], "user_id": optional, "placement": default more_like_these, "k": 10, '
                    '"filters": {...}, "explain": false}. Context items count as positive examples.')
def post_recommendations():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, message="the body must be a JSON object")
    unknown = sorted(set(body) - {"examples", "negative_examples", "context", "user_id", "placement", "k",
                                  "filters", "explain"})
    if unknown:
        abort(400, message=f"unknown field: {unknown[0]}")
    positives = _external_list(body, "examples") + _external_list(body, "context")
    negatives = _external_list(body, "negative_examples")
    if not positives:
        abort(400, message="give at least one item in examples or context")
    k = _k(body.get("k"))
    placement = _placement(body.get("placement"), "more_like_these")
    filters = _filters_object(body.get("filters") or {})
    explain = _explain(body.get("explain"))
    user_id = None
    if body.get("user_id") is not None:
        if not isinstance(body["user_id"], str):
            abort(400, message="user_id must be a string")
        row = get_conn().execute(
            "select user_id from pgrecs.users where tenant_id = pgrecs.current_tenant() and external_id = %s",
            (body["user_id"],),
        ).fetchone()
        if row is None:
            abort(404, message=f"unknown user: {body['user_id']}")
        user_id = row[0]
    pos_ids = [_item_id(x) for x in positives]
    neg_ids = [_item_id(x) for x in negatives]
    return _run(
        "recs.recommend(examples_positive => %(pos)s::bigint[], examples_negative => %(neg)s::bigint[],"
        " k => %(k)s, placement => %(placement)s, filters => %(filters)s, explain => %(explain)s)",
        {"pos": pos_ids, "neg": neg_ids, "k": k, "placement": placement, "filters": Jsonb(filters),
         "explain": explain},
        endpoint="examples", placement=placement, k=k, filters=filters, user_id=user_id,
        anchors=pos_ids + neg_ids,
    )
