"""POST /events: one event object or a list, through the loader's validation (app.ingest).

Accepted events are stored at once, so the next recommendation request for that user sees them;
rejected ones come back with their index and reason and are kept in pgrecs.ingest_rejects.
Events may carry the request_id of the recommendation list they came from.
"""

from __future__ import annotations

from apiflask import APIBlueprint, abort
from flask import request

from app.api.database import get_conn
from app.errors import PgrecsError

bp = APIBlueprint("events", __name__)

BATCH_MAX = 1000


@bp.post("/events")
@bp.doc(summary="Record one or many events",
        description='Body: an event object or a list of them: {"user_id", "item_id" (external ids), "event_type", '
                    '"occurred_at" (ISO 8601, default now), "value", "session_id", "request_id", "event_id"}.')
def post_events():
    from datetime import datetime, timezone

    from app.ingest import field_names, ingest_records

    body = request.get_json(silent=True)
    records = body if isinstance(body, list) else [body] if isinstance(body, dict) else None
    if records is None or not all(isinstance(r, dict) for r in records):
        abort(400, message="the body must be an event object or a list of event objects")
    if not records:
        abort(400, message="no events given")
    if len(records) > BATCH_MAX:
        abort(400, message=f"at most {BATCH_MAX} events per request")
    known = set(field_names("events"))
    now = datetime.now(timezone.utc).isoformat()
    cleaned = []
    for record in records:
        unknown = sorted(set(record) - known)
        if unknown:
            abort(400, message=f"unknown field: {unknown[0]}")
        row = dict(record)
        row.setdefault("occurred_at", now)
        cleaned.append(row)
    conn = get_conn()
    try:
        result = ingest_records(conn, "events", cleaned, source="api")
    except PgrecsError as exc:
        abort(400, message=str(exc))
    conn.commit()
    rejected = [{"index": r.line_number - 1, "reason": r.reason} for r in result.rejects]
    status = 201 if result.inserted else 200
    return {
        "accepted": result.inserted + result.unchanged + result.updated,
        "inserted": result.inserted,
        "duplicates": result.unchanged,
        "rejected": rejected,
    }, status
