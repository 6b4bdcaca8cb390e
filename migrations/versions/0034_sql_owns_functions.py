"""Functions live in sql/: the drops of their old signatures move here.

The idempotent sql/ files now define pgrecs.category_key and
pgrecs.remove_deleted_items_from_neighbors (first created by migrations 0009, 0011 and 0012) with
`create or replace`, so the generated column pgrecs.items.category_key and the trigger
items_deleted_leave_neighbors keep pointing at the same functions, now defined there. Those files
hold no drops: the old signatures that they replaced are dropped once, here, before sql/ is
applied at head:

- pgrecs.similarity_filter_sql() (the filter predicate now takes the filters as arguments);
- pgrecs.similarity_filter_matches(text, boolean, text[], numeric, numeric, boolean, integer)
  (selectivity is now read from pg_stats by pgrecs.similarity_filter_estimate);
- pgrecs.publish_signals(jsonb, boolean) with the result type before sequence_rows (a changed
  result type cannot be replaced in place).

Downgrade restores nothing: the dropped signatures were superseded long before this revision.

Revision ID: 0034_sql_owns_functions
Revises: 0033_embedding_tie_keys
Create Date: 2026-12-03
"""

from alembic import op

revision = "0034_sql_owns_functions"
down_revision = "0033_embedding_tie_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        drop function if exists pgrecs.similarity_filter_sql();
        drop function if exists pgrecs.similarity_filter_matches(text, boolean, text[], numeric, numeric, boolean, integer);
        do $$
        begin
            if exists (select 1 from pg_catalog.pg_proc
                       where oid = pg_catalog.to_regprocedure('pgrecs.publish_signals(jsonb, boolean)')
                         and not 'sequence_rows' = any(coalesce(proargnames, '{}'))) then
                drop function pgrecs.publish_signals(jsonb, boolean);
            end if;
        end
        $$;
        """
    )


def downgrade() -> None:
    pass
