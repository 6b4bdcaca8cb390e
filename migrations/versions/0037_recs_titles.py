"""The serving functions that take external ids return each item's title.

recs.recommend_for_item(text, ...), recs.recommend_for_user(text, ...) and
recs.search_by_vector(...) gain a `title` column: a function's result type cannot be replaced, so
the old signatures are dropped here and sql/069_recs.sql creates the new ones (with the new
recs.recommend(text[], ...), recs.similar_items(text, ...), recs.rank_request,
recs.serve_recommendations and recs.log_recommendations) in the same transaction.

Revision ID: 0037_recs_titles
Revises: 0036_item_filter
Create Date: 2026-12-03
"""

from alembic import op

revision = "0037_recs_titles"
down_revision = "0036_item_filter"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        drop function if exists recs.recommend_for_item(text, integer, text, jsonb, boolean);
        drop function if exists recs.recommend_for_user(text, integer, text, jsonb, boolean);
        drop function if exists recs.search_by_vector(halfvec, integer, jsonb, text);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        drop function if exists recs.serve_recommendations(uuid, text, integer, text, jsonb, boolean, text, text, text[], text[]);
        drop function if exists recs.log_recommendations(uuid, text, text, integer, jsonb, text, text[], bigint[], real[]);
        drop function if exists recs.rank_request(text, integer, text, jsonb, boolean, text, text, text[], text[]);
        drop function if exists recs.recommend(text[], text[], integer, text, jsonb, boolean);
        drop function if exists recs.similar_items(text, integer, jsonb, text);
        drop function if exists recs.item_ids(text[]);
        drop function if exists recs.item_id(text);
        """
    )
