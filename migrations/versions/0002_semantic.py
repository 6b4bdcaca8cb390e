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
        """
    )


def downgrade() -> None:
    op.execute(
        """
        drop table if exists pgrecs.item_embeddings;
        drop table if exists pgrecs.embedding_models;
        """
    )
