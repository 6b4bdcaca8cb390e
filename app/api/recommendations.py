"""Recommendations over HTTP: one item's neighbours, a user's picks, more-like-these.

GET  /items/<external_id>/recommendations
GET  /users/<external_id>/recommendations
POST /recommendations   {"examples": [...], "negative_examples": [...], "context": [...], "filters": {...}}

All take `placement`, `k` (1..100) and filters (query parameters category, brand, price_min,
price_max, in_stock, or a JSON object in `filters`), validated by the schemas in
pgrecs.api.schemas. The ranking is done by the STABLE SQL functions recs.recommend_for_item /
recs.recommend_for_user / recs.recommend; this module only logs the served list in
pgrecs.recommendation_requests and returns its request_id, which later events can carry
(POST /events, field request_id).
"""

from __future__ import annotations

import uuid

import psycopg
from apiflask import APIBlueprint, abort
from marshmallow import RAISE
from psycopg.types.json import Jsonb

from pgrecs.api.database import PRIMARY, get_conn, on_primary, replica_read, served_by
from pgrecs.api.schemas import RecommendationQuery, RecommendationsBody, RecommendationsOut, filters_json, ok

bp = APIBlueprint("recommendations", __name__)


_LOG_COLUMNS = ("request_id, tenant_id, endpoint, placement, user_id, anchor_item_ids, k, filters, item_ids, scores")
_LOG_VALUES = ("%(log_request)s, pgrecs.current_tenant(), %(log_endpoint)s, %(log_placement)s, %(log_user)s,"
               " %(log_anchors)s::bigint[], %(log_k)s, %(log_filters)s")


def _run(function_sql: str, params: dict, *, endpoint: str, placement: str, k: int, filters: dict,
         user_id: int | None, anchors: list[int]) -> dict:
    conn = get_conn()
    request_id = uuid.uuid4()
    log_params = {"log_request": request_id, "log_endpoint": endpoint, "log_placement": placement,
                  "log_user": user_id, "log_anchors": anchors, "log_k": k, "log_filters": Jsonb(filters)}
    ranked = (f"select r.item_id, r.external_id, i.title, r.score, r.rank, r.contributions, r.reasons"
              f" from {function_sql} as r join pgrecs.items i on i.item_id = r.item_id order by r.rank")
    try:
        if served_by() == PRIMARY:
            # one statement ranks and logs (a data-modifying CTE), sent with its commit in one pipeline;
            # the log row is not worth a synchronous WAL flush: this transaction writes nothing else
            # (a crash may lose the last fraction of a second of log rows, never an event)
            with conn.pipeline():
                conn.execute("select set_config('synchronous_commit', 'off', true)")
                cur = conn.execute(
                    f"with r as materialized ({ranked}),"
                    f" logged as (insert into pgrecs.recommendation_requests ({_LOG_COLUMNS})"
                    f" select {_LOG_VALUES}, coalesce(array_agg(r.item_id order by r.rank), '{{}}'),"
                    " coalesce(array_agg(r.score::real order by r.rank), '{}') from r)"
                    " select * from r order by r.rank",
                    {**params, **log_params},
                )
                conn.commit()
            rows = cur.fetchall()
        else:
            # a standby cannot write: rank there, log the served list on the primary
            rows = conn.execute(ranked, params).fetchall()
            conn.commit()
            on_primary([(
                "select set_config('synchronous_commit', 'off', true)", {}), (
                f"insert into pgrecs.recommendation_requests ({_LOG_COLUMNS})"
                f" values ({_LOG_VALUES}, %(log_items)s::bigint[], %(log_scores)s::real[])",
                {**log_params, "log_items": [row[0] for row in rows], "log_scores": [float(row[3]) for row in rows]},
            )])
    except psycopg.errors.NoDataFound as exc:
        abort(404, message=exc.diag.message_primary or "not found")
    except (psycopg.errors.InvalidParameterValue, psycopg.errors.InvalidTextRepresentation,
            psycopg.errors.NumericValueOutOfRange) as exc:
        abort(400, message=exc.diag.message_primary or "bad parameter")
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


def _user_id(external_id: str) -> int | None:
    """The internal id of a user; None for a new visitor (an id never seen), who gets the cold-start list."""
    row = get_conn().execute(
        "select user_id from pgrecs.users where tenant_id = pgrecs.current_tenant() and external_id = %s",
        (external_id,),
    ).fetchone()
    return None if row is None else row[0]


def _item_id(external_id: str) -> int:
    row = get_conn().execute(
        "select item_id from pgrecs.items where tenant_id = pgrecs.current_tenant() and external_id = %s",
        (external_id,),
    ).fetchone()
    if row is None:
        abort(404, message=f"unknown item: {external_id}")
    return row[0]


RESPONSES = ok(RecommendationsOut, "The ranked list, logged under its request_id",
               **{"404": "Unknown item or placement"})


@bp.get("/items/<path:external_id>/recommendations")
@bp.input(RecommendationQuery, location="query", arg_name="query", unknown=RAISE)
@bp.doc(summary="Recommendations next to one item", responses=RESPONSES,
        description="Semantic and co-occurrence neighbours of the item plus category popularity, fused and "
                    "filtered by the placement's rules (default placement pdp_similar). 404 for an unknown item "
                    "or placement.")
@replica_read
def item_recommendations(external_id: str, query: dict):
    placement = query.get("placement") or "pdp_similar"
    filters = filters_json(query)
    item_id = _item_id(external_id)
    return _run(
        "recs.recommend_for_item(item => %(item)s::bigint, k => %(k)s, placement => %(placement)s,"
        " filters => %(filters)s, explain => %(explain)s)",
        {"item": item_id, "k": query["k"], "placement": placement, "filters": Jsonb(filters),
         "explain": query["explain"]},
        endpoint="item", placement=placement, k=query["k"], filters=filters, user_id=None, anchors=[item_id],
    )


@bp.get("/users/<path:external_id>/recommendations")
@bp.input(RecommendationQuery, location="query", arg_name="query", unknown=RAISE)
@bp.doc(summary="Personal recommendations for a user", responses=RESPONSES,
        description="From the user's live event history (default placement home_for_you). A user without "
                    "history, or never seen before, gets the placement's cold-start list: popular items, "
                    "popular in the category when a category filter is given, the first reason starting "
                    "\"new visitor: \". 404 for an unknown placement.")
@replica_read
def user_recommendations(external_id: str, query: dict):
    placement = query.get("placement") or "home_for_you"
    filters = filters_json(query)
    user_id = _user_id(external_id)
    return _run(
        "recs.recommend_for_user(user_id => %(user)s::bigint, k => %(k)s, placement => %(placement)s,"
        " filters => %(filters)s, explain => %(explain)s)",
        {"user": user_id, "k": query["k"], "placement": placement, "filters": Jsonb(filters),
         "explain": query["explain"]},
        endpoint="user", placement=placement, k=query["k"], filters=filters, user_id=user_id, anchors=[],
    )


@bp.post("/recommendations")
@bp.input(RecommendationsBody, location="json", arg_name="body")
@bp.doc(summary="More like these, less like those", responses=RESPONSES,
        description="Examples and context items (external ids) count as positives, negative_examples steer away "
                    "(default placement more_like_these). user_id (optional; a new visitor's id is fine) is "
                    "logged with the list. 404 for an unknown item or placement.")
@replica_read
def post_recommendations(body: dict):
    positives = (body.get("examples") or []) + (body.get("context") or [])
    negatives = body.get("negative_examples") or []
    k = body["k"]
    placement = body.get("placement") or "more_like_these"
    filters = filters_json(body.get("filters") or {})
    explain = bool(body.get("explain"))
    user_id = None if body.get("user_id") is None else _user_id(body["user_id"])
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
