"""Semantic layer: the similarity filter columns copied onto pgrecs.item_embeddings.

recs.similar_items filters on active, category, price and stock. With those columns on the
embedding row itself, the HNSW scan checks a filter on the tuple it already reads (no join to
pgrecs.items per candidate), the exact path of a selective filter reads one GIN/btree-selected
subset of item_embeddings, and a hot filter can get a partial HNSW index
(pgrecs.ensure_filter_index). Triggers in sql/030_semantic.sql keep the copies in step with
pgrecs.items (BEFORE INSERT on item_embeddings, AFTER UPDATE on items).

The one-off fill updates every embedding row that differs. Maintaining an HNSW index row by row
through a full-table update costs more than building it again, so when rows differ the model
indexes are dropped before the fill and rebuilt after it, in this transaction (fine for small
tables). A CREATE INDEX in the transaction that updated the rows also indexes the old row
versions, so for a large table fill first, in a transaction of its own, and migrate afterwards
(the columns are added "if not exists", nothing then differs, and the migration only builds the
model indexes the fill dropped, over live rows):

    drop index pgrecs.item_embeddings_hnsw_m1;      -- each model's index
    alter table pgrecs.item_embeddings add column if not exists active boolean not null default true,
        add column if not exists category_path text[] not null default '{}',
        add column if not exists price numeric(14, 4),
        add column if not exists in_stock boolean not null default true;
    update pgrecs.item_embeddings e set active = i.active, category_path = i.category_path,
        price = i.price, in_stock = coalesce(i.stock, 1) > 0 from pgrecs.items i where i.item_id = e.item_id;
    vacuum analyze pgrecs.item_embeddings;
    -- then: PGOPTIONS='-c maintenance_work_mem=2GB' pgrecs migrate

benchmarks/bench_similar.py does exactly this when it reuses a database from before this revision.

Revision ID: 0007_embedding_filters
Revises: 0006_security
Create Date: 2026-11-25
"""

from alembic import op

revision = "0007_embedding_filters"
down_revision = "0006_security"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        alter table pgrecs.item_embeddings
            add column if not exists active boolean not null default true,
            add column if not exists category_path text[] not null default '{}',
            add column if not exists price numeric(14, 4),
            add column if not exists in_stock boolean not null default true;
        comment on column pgrecs.item_embeddings.active is 'Copy of pgrecs.items.active (similarity filters).';
        comment on column pgrecs.item_embeddings.category_path is 'Copy of pgrecs.items.category_path (similarity filters).';
        comment on column pgrecs.item_embeddings.price is 'Copy of pgrecs.items.price (similarity filters).';
        comment on column pgrecs.item_embeddings.in_stock is 'coalesce(pgrecs.items.stock, 1) > 0 (similarity filters).';

        do $$
        declare
            m record;
        begin
            if exists (
                select from pgrecs.item_embeddings as e
                join pgrecs.items as i on i.item_id = e.item_id
                where (e.active, e.category_path, e.price, e.in_stock)
                    is distinct from (i.active, i.category_path, i.price, coalesce(i.stock, 1) > 0)
            ) then
                for m in select * from pgrecs.embedding_models loop
                    execute format('drop index if exists pgrecs.%I', 'item_embeddings_hnsw_m' || m.model_id);
                end loop;
                update pgrecs.item_embeddings as e
                set active = i.active, category_path = i.category_path, price = i.price,
                    in_stock = coalesce(i.stock, 1) > 0
                from pgrecs.items as i
                where i.item_id = e.item_id
                    and (e.active, e.category_path, e.price, e.in_stock)
                        is distinct from (i.active, i.category_path, i.price, coalesce(i.stock, 1) > 0);
            end if;
            -- every model's index (re-created when dropped above, or when a pre-fill dropped it)
            for m in select * from pgrecs.embedding_models loop
                execute format(
                    'create index if not exists %I on pgrecs.item_embeddings using hnsw '
                    '((embedding::halfvec(%s)) halfvec_cosine_ops) with (m = %s, ef_construction = %s) '
                    'where model_id = %s',
                    'item_embeddings_hnsw_m' || m.model_id, m.dimensions, m.hnsw_m, m.hnsw_ef_construction,
                    m.model_id);
            end loop;
        end
        $$;

        -- the exact path of a selective filter: a GIN-selected (category) or btree-selected (price)
        -- subset of one model's embeddings
        create index if not exists item_embeddings_category on pgrecs.item_embeddings using gin (category_path);
        create index if not exists item_embeddings_price on pgrecs.item_embeddings (price);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        drop index if exists pgrecs.item_embeddings_category;
        drop index if exists pgrecs.item_embeddings_price;
        alter table pgrecs.item_embeddings
            drop column if exists active,
            drop column if exists category_path,
            drop column if exists price,
            drop column if exists in_stock;
        """
    )
