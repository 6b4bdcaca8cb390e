"""One filter vocabulary: the composite type pgrecs.item_filter, and the old filter signatures dropped.

Recommendations and similar items / search used to validate and read their filters separately,
with the same key names and different meanings (`category` matched one element at any level of
the category path for recommendations, a path prefix for similar items). sql/045_filters.sql now
defines one parser, pgrecs.parse_filters(jsonb), returning the type created here, and every
ranking stage and the semantic search take that value. The type is run-once DDL, so it lives
here; the functions are (re)defined in sql/.

Dropped (replaced by the functions of sql/045_filters.sql and the stages taking
pgrecs.item_filter): pgrecs.check_filters, pgrecs.check_similarity_filters,
pgrecs.filter_category, the scalar pgrecs.item_passes, and the jsonb or scalar-filter signatures
of pgrecs.similarity_filter_sql, similarity_filter_count, similarity_choose,
top_signal_candidates, rank_candidates, rank_pool and rank_pins.

Revision ID: 0036_filter_vocabulary
Revises: 0035_signal_registry
Create Date: 2026-12-03
"""

from alembic import op

revision = "0036_filter_vocabulary"
down_revision = "0035_signal_registry"
branch_labels = None
depends_on = None

REPLACED = [
    "pgrecs.check_filters(jsonb)",
    "pgrecs.check_similarity_filters(jsonb)",
    "pgrecs.filter_category(jsonb)",
    "pgrecs.item_passes(pgrecs.items, boolean, numeric, numeric, text, text, jsonb, jsonb, jsonb)",
    "pgrecs.similarity_filter_sql(boolean, text[], numeric, numeric, boolean)",
    "pgrecs.similarity_filter_count(text, boolean, text[], numeric, numeric, boolean, integer)",
    "pgrecs.similarity_choose(text, boolean, text[], numeric, numeric, boolean, integer)",
    "pgrecs.top_signal_candidates(text, text, integer, jsonb, text[])",
    "pgrecs.rank_candidates(text, bigint[], real[], integer[], bigint[], text[], integer[], text[], jsonb)",
    "pgrecs.rank_pool(text, record, text[], double precision[], bigint[], text[], double precision[], bigint[],"
    " bigint[], text[], bigint[], jsonb, integer)",
    "pgrecs.rank_pins(text, text, jsonb, bigint[], integer)",
]


def upgrade() -> None:
    for signature in REPLACED:
        op.execute(f"drop function if exists {signature}")
    op.execute(
        """
        do $$
        begin
            if to_regtype('pgrecs.item_filter') is null then
                create type pgrecs.item_filter as (
                    category text[],
                    category_any text,
                    brand text,
                    brands text[],
                    exclude_brands text[],
                    price_min numeric,
                    price_max numeric,
                    in_stock boolean,
                    active boolean,
                    exclude bigint[]
                );
            end if;
        end
        $$;
        comment on type pgrecs.item_filter is
            'A parsed filters object (pgrecs.parse_filters): category is a path prefix, category_any one '
            'element at any level; in_stock true keeps items in stock only; active (default true) the items '
            'with that flag; exclude internal item ids. Null fields filter nothing.';
        """
    )


def downgrade() -> None:
    # the functions of sql/ that take the type go with it; sql/ is re-applied on the way up
    op.execute("drop type if exists pgrecs.item_filter cascade")
