"""POST /events: one event object or a list, through the loader's validation (pgrecs.ingest).

Accepted events are stored at once, so the next recommendation request for that user sees them;
rejected ones come back with their index and reason and are kept in pgrecs.ingest_rejects.
Events may carry the request_id of the recommendation list they came from.
"""

from __future__ import annotations

from apiflask import APIBlueprint, abort

from pgrecs.api.database import get_conn
from pgrecs.api.schemas import EVENTS_MAX, EventsBody, EventsOut, ok
from pgrecs.errors import PgrecsError

bp = APIBlueprint("events", __name__)

BATCH_MAX = EVENTS_MAX


@bp.post("/events")
@bp.input(EventsBody, location="json", arg_name="body")
@bp.doc(summary="Record one or many events", responses=ok(EventsOut, "Stored (201 when any event was new)", 201,
        **{"200": {"description": "Nothing new: duplicates or rejects only",
                   "content": {"application/json": {"schema": EventsOut}}}}),
        description="Body: an event object or a list of 1..1000. A field of the wrong JSON type or an unknown "
                    "field fails the whole request (400); an event the loader refuses (unknown item, unknown "
                    "event type, bad timestamp) comes back in `rejected` with its index and reason and is kept "
                    "in pgrecs.ingest_rejects.")
def post_events(body: dict):
    from datetime import datetime, timezone

    from pgrecs.ingest import ingest_records

    now = datetime.now(timezone.utc).isoformat()
    cleaned = [event if "occurred_at" in event else {**event, "occurred_at": now} for event in body["events"]]
    conn = get_conn()
    try:
        result = ingest_records(conn, "events", cleaned, source="api")
    except PgrecsError as exc:
        abort(400, message=str(exc))
    conn.commit()
    rejected = [{"index": r.line_number - 1, "reason": r.reason} for r in result.rejects]
    status = 201 if result.inserted else 200
    return {
        "accepted": result.inserted + result.unchanged + result.updated + result.duplicates,
        "inserted": result.inserted,
        "duplicates": result.unchanged + result.duplicates,
        "rejected": rejected,
    }, status
