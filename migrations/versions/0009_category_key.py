"""Category key: items.category_path as one text column, indexed per tenant.

The scoring functions fetch "popular items in the anchor's category" by the category path. Under
row-level security (the API role, see sql/070_security.sql) Postgres only uses a query's condition
as an index condition when its operator is LEAKPROOF; text[] equality (array_eq) is not, so the
lookup became a sequential scan of every item (~35 ms at 100k items, 10x the rest of a request).
Text equality is leakproof: pgrecs.items.category_key (the path joined by chr(31), generated) with
an index on (tenant_id, category_key) keeps that lookup an index scan for the API role too.

Revision ID: 0009_category_key
Revises: 0008_refresh_inputs
Create Date: 2026-11-25
"""

from alembic import op

revision = "0009_category_key"
down_revision = "0008_refresh_inputs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create or replace function pgrecs.category_key(category_path text[])
        returns text
        language sql
        immutable parallel safe
        as $$
            select pg_catalog.array_to_string(category_path, pg_catalog.chr(31))
        $$;
        comment on function pgrecs.category_key(text[]) is
            'A category path as one text key (levels joined by chr(31)): items.category_key, compared '
            'with text equality, which is leakproof and so usable by an index under row-level security.';

        alter table pgrecs.items
            add column if not exists category_key text
            generated always as (pgrecs.category_key(category_path)) stored;
        comment on column pgrecs.items.category_key is
            'category_path joined by chr(31) (generated): the leakproof lookup key for popular-in-category.';
        create index if not exists items_tenant_category_key on pgrecs.items (tenant_id, category_key);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        drop index if exists pgrecs.items_tenant_category_key;
        alter table pgrecs.items drop column if exists category_key;
        drop function if exists pgrecs.category_key(text[]);
        """
    )
