"""Helpers the blueprints share: the model this process serves and the semantic result rows."""

from __future__ import annotations

from flask import current_app

RESULT_COLUMNS = "s.item_id, s.external_id, s.title, s.score, s.rank"


def model_name() -> str | None:
    """The model this process serves (EMBEDDING_MODEL config; the default model when unset)."""
    return current_app.config.get("EMBEDDING_MODEL")



def rows_to_results(rows) -> list[dict]:
    """Rows of RESULT_COLUMNS -> the `results` of similar items and search."""
    return [{"item_id": item_id, "external_id": external_id, "title": title, "score": round(float(score), 6),
             "rank": rank} for item_id, external_id, title, score, rank in rows]
