"""Recommendations over HTTP: one item's neighbours, a user's picks, more-like-these.

GET  /items/<external_id>/recommendations
GET  /users/<external_id>/recommendations
POST /recommendations   {"examples": [...], "negative_examples": [...], "context": [...], "filters": {...}}

All take `placement`, `k` (1..100) and filters, validated by pgrecs.api.schemas. SQL does the rest
by external ids: on the primary recs.serve_recommendations ranks and logs the served list in one
statement, sent with its commit; on a standby recs.rank_request ranks there and
recs.log_recommendations logs on the primary. The list's request_id can be carried by later events
(POST /events, field request_id). Errors (unknown item or placement) map in pgrecs.api.errors.
"""

from __future__ import annotations

import uuid

from apiflask import APIBlueprint
from marshmallow import RAISE
from psycopg.types.json import Jsonb

from pgrecs.api.database import PRIMARY, get_conn, on_primary, replica_read, served_by
from pgrecs.api.schemas import RecommendationQuery, RecommendationsBody, RecommendationsOut, filters_json, ok

bp = APIBlueprint("recommendations", __name__)

_REQUEST = ("endpoint => %(endpoint)s, k => %(k)s, placement => %(placement)s, filters => %(filters)s,"
            " explain => %(explain)s, item => %(item)s, user_id => %(user_id)s, examples => %(examples)s::text[],"
            " negative_examples => %(negative_examples)s::text[]")
_DEFAULT_PLACEMENT = {"item": "pdp_similar", "user": "home_for_you", "examples": "more_like_these"}
_COLUMNS = "item_id, external_id, title, round(score::numeric, 6)::float8, rank, reasons, contributions"


def _serve(endpoint: str, placement: str | None, k: int, filters: dict, explain: bool, *, item: str | None = None,
           user_id: str | None = None, examples: list[str] = (), negative_examples: list[str] = ()) -> dict:
    conn, request_id = get_conn(), uuid.uuid4()
    placement = placement or _DEFAULT_PLACEMENT[endpoint]
    params = {"endpoint": endpoint, "k": k, "placement": placement, "filters": Jsonb(filters), "explain": explain,
              "item": item, "user_id": user_id, "examples": list(examples),
              "negative_examples": list(negative_examples), "request_id": request_id}
    if served_by() == PRIMARY:
        with conn.pipeline():
            cur = conn.execute(f"select {_COLUMNS} from recs.serve_recommendations(request_id => %(request_id)s,"
                               f" {_REQUEST})", params)
            conn.commit()
        rows = cur.fetchall()
    else:  # a standby cannot write: rank there, log on the primary
        rows = conn.execute(f"select {_COLUMNS} from recs.rank_request({_REQUEST})", params).fetchall()
        conn.commit()
        anchors = [item] if endpoint == "item" else [*examples, *negative_examples]
        on_primary([("select recs.log_recommendations(request_id => %s, endpoint => %s, placement => %s, k => %s,"
                     " filters => %s, user_id => %s, anchors => %s::text[], item_ids => %s::bigint[],"
                     " scores => %s::real[])",
                     (request_id, endpoint, placement, k, Jsonb(filters), user_id,
                      anchors, [r[0] for r in rows], [r[3] for r in rows]))])
    keys = ("item_id", "external_id", "title", "score", "rank", "reasons", "contributions")
    return {"request_id": str(request_id), "placement": placement, "k": k,
            "items": [dict(zip(keys, row)) for row in rows]}


RESPONSES = ok(RecommendationsOut, "The ranked list, logged under its request_id", **{"404": "Unknown item or placement"})


@bp.get("/items/<path:external_id>/recommendations")
@bp.input(RecommendationQuery, location="query", arg_name="query", unknown=RAISE)
@bp.doc(summary="Recommendations next to one item", responses=RESPONSES,
        description="Semantic and co-occurrence neighbours of the item plus category popularity, fused and "
                    "filtered by the placement's rules (default placement pdp_similar). 404 for an unknown item "
                    "or placement.")
@replica_read
def item_recommendations(external_id: str, query: dict):
    return _serve("item", query.get("placement"), query["k"], filters_json(query), query["explain"], item=external_id)


@bp.get("/users/<path:external_id>/recommendations")
@bp.input(RecommendationQuery, location="query", arg_name="query", unknown=RAISE)
@bp.doc(summary="Personal recommendations for a user", responses=RESPONSES,
        description="From the user's live event history (default placement home_for_you). A user without "
                    "history, or never seen before, gets the placement's cold-start list: popular items, "
                    "popular in the category when a category filter is given, the first reason starting "
                    "\"new visitor: \". 404 for an unknown placement.")
@replica_read
def user_recommendations(external_id: str, query: dict):
    return _serve("user", query.get("placement"), query["k"], filters_json(query), query["explain"],
                  user_id=external_id)


@bp.post("/recommendations")
@bp.input(RecommendationsBody, location="json", arg_name="body")
@bp.doc(summary="More like these, less like those", responses=RESPONSES,
        description="Examples and context items (external ids) count as positives, negative_examples steer away "
                    "(default placement more_like_these). user_id (optional; a new visitor's id is fine) is "
                    "logged with the list. 404 for an unknown item or placement.")
@replica_read
def post_recommendations(body: dict):
    return _serve("examples", body.get("placement"), body["k"], filters_json(body.get("filters") or {}), bool(body.get("explain")),
                  user_id=body.get("user_id"), examples=(body.get("examples") or []) + (body.get("context") or []),
                  negative_examples=body.get("negative_examples") or [])
