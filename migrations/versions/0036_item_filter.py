"""One filter vocabulary: the composite type pgrecs.item_filter, and the drops of the two dialects.

pgrecs.parse_filters(jsonb) (sql/045_filters.sql) turns a filters object into one
pgrecs.item_filter; recommendations (pgrecs.rank_items, its stages, recs.why_not) and similarity
(pgrecs.semantic_search, recs.similar_items, recs.search_by_vector) all read it, and `category`
is a path prefix on both. The type is created here (sql/ files are create-or-replace only); the
signatures it replaces are dropped here, before sql/ is applied at head:

- pgrecs.check_filters(jsonb), pgrecs.check_similarity_filters(jsonb), pgrecs.filter_category(jsonb):
  replaced by pgrecs.parse_filters;
- pgrecs.item_passes and pgrecs.item_matches_filters over the jsonb dialect (brands, exclude as
  jsonb; category any level): replaced by the same names over arrays and a category prefix;
- pgrecs.similarity_filter_sql over five filters: it now takes every key of the vocabulary;
- the ranking stages that took the filters as jsonb (pgrecs.top_signal_candidates,
  rank_candidates, rank_pool, rank_pins): they now take a pgrecs.item_filter.

Downgrade drops the type (and, by cascade, what sql/ defined over it); the old dialects are not
restored.

Revision ID: 0036_item_filter
Revises: 0035_signal_registry
Create Date: 2026-12-03
"""

from alembic import op

revision = "0036_item_filter"
down_revision = "0035_signal_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        drop function if exists pgrecs.check_filters(jsonb);
        drop function if exists pgrecs.check_similarity_filters(jsonb);
        drop function if exists pgrecs.filter_category(jsonb);
        drop function if exists pgrecs.item_matches_filters(pgrecs.items, jsonb);
        drop function if exists pgrecs.item_passes(pgrecs.items, boolean, numeric, numeric, text, text, jsonb, jsonb, jsonb);
        drop function if exists pgrecs.similarity_filter_sql(boolean, text[], numeric, numeric, boolean);
        drop function if exists pgrecs.top_signal_candidates(text, text, integer, jsonb, text[]);
        drop function if exists pgrecs.rank_candidates(text, bigint[], real[], integer[], bigint[], text[], integer[], text[], jsonb);
        drop function if exists pgrecs.rank_pins(text, text, jsonb, bigint[], integer);
        do $$
        declare
            fn regprocedure;
        begin
            -- rank_pool's argument list is long (a placements row among them): drop the one over jsonb
            for fn in
                select p.oid::regprocedure
                from pg_catalog.pg_proc as p
                join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
                where n.nspname = 'pgrecs' and p.proname = 'rank_pool'
                  and 'jsonb'::regtype = any(p.proargtypes::oid[])
            loop
                execute format('drop function %s', fn);
            end loop;
        end
        $$;
        create type pgrecs.item_filter as (
            category text[],
            brand text,
            brands text[],
            exclude_brands text[],
            price_min numeric,
            price_max numeric,
            in_stock boolean,
            exclude bigint[]
        );
        comment on type pgrecs.item_filter is
            'A parsed filters object (pgrecs.parse_filters): category path prefix, brand, brands, exclude_brands, '
            'price range, in_stock, excluded item ids; a null field filters nothing.';
        """
    )


def downgrade() -> None:
    op.execute("drop type if exists pgrecs.item_filter cascade")
