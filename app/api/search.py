"""Semantic search: GET /search?q= (the query embedded in-process).

Each request reads which model serves (the default one, unless the process is pinned with
EMBEDDING_MODEL): a cheap read of a tiny table, so a promotion or rollback is picked up by the
next request without a restart. The query is encoded by that model (loaded once per process and
cached) and searched in that model's embeddings only, by name: a request that straddles a
promotion is answered wholly by the model it started with (old embeddings stay until dropped).
"""

from __future__ import annotations

import json

from apiflask import APIBlueprint, abort
from marshmallow import RAISE
from pgvector import HalfVector

from pgrecs.api.database import get_conn, replica_read
from pgrecs.api.common import RESULT_COLUMNS, model_name, rows_to_results
from pgrecs.api.schemas import SearchOut, SearchQuery, filters_json, ok
from pgrecs.errors import PgrecsError
from pgrecs.embeddings.models import encoder_for, load_spec

bp = APIBlueprint("search", __name__)


@bp.get("/search")
@bp.input(SearchQuery, location="query", arg_name="query", unknown=RAISE)
@bp.doc(responses=ok(SearchOut, "The k items nearest to the query text"))
@replica_read
def search(query: dict):
    """Items whose embedding is nearest to the embedded query text."""
    q, k = query["q"], query["k"]
    filters = filters_json(query)
    conn = get_conn()
    try:
        spec = load_spec(conn, model_name())
        vector = encoder_for(spec).encode([q])[0]
    except PgrecsError as exc:
        abort(503, message=str(exc))
    rows = conn.execute(
        f"select {RESULT_COLUMNS} from recs.search_by_vector(query_embedding => %s, k => %s, filters => %s::jsonb,"
        " model => %s) as s order by s.rank",
        (HalfVector(vector), k, json.dumps(filters), spec.name)).fetchall()
    return {"q": q, "k": k, "model": spec.name, "filters": filters, "results": rows_to_results(rows)}
