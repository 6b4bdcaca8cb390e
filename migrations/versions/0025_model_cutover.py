"""Model cut-over: a standby state for the model a promotion replaced, and the semantic neighbour
lists of every model that is not the default.

States: 'candidate' (being shadow-embedded, not serving), 'active' (serving), 'standby' (the
previous default after a promotion: still embedded and listed, so `pgrecs models rollback` is
instant), 'retired' (replaced; embeddings kept until `pgrecs models drop`, no longer maintained).
At most one model is on standby.

pgrecs.item_neighbors keeps the default model's semantic lists (signal 'semantic'), the lists
scoring reads; pgrecs.semantic_neighbors keeps those of the other maintained models, built while
the default serves. A promotion swaps the two in one transaction. The functions live in
sql/030_semantic.sql and sql/036_model_lifecycle.sql.

Revision ID: 0025_model_cutover
Revises: 0024_tenant_defaults
Create Date: 2026-12-02
"""

from alembic import op

revision = "0025_model_cutover"
down_revision = "0024_tenant_defaults"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        alter table pgrecs.embedding_models drop constraint if exists embedding_models_state_check;
        alter table pgrecs.embedding_models add constraint embedding_models_state_check
            check (state in ('candidate', 'active', 'standby', 'retired'));
        create unique index embedding_models_one_standby on pgrecs.embedding_models (state) where state = 'standby';
        comment on column pgrecs.embedding_models.state is
            'candidate (shadow-embedded, not serving), active (serving), standby (replaced by the last promotion, '
            'kept embedded for rollback) or retired (replaced; embeddings kept until dropped, not maintained).';

        create table pgrecs.semantic_neighbors (
            tenant_id text not null default 'default' references pgrecs.tenants,
            model_id smallint not null references pgrecs.embedding_models on delete cascade,
            item_id bigint not null references pgrecs.items on delete cascade,
            neighbor_item_id bigint not null references pgrecs.items on delete cascade,
            score real not null,
            rank smallint not null check (rank >= 1),
            computed_at timestamptz not null default now(),
            primary key (tenant_id, model_id, item_id, neighbor_item_id)
        );
        create index semantic_neighbors_reverse on pgrecs.semantic_neighbors (neighbor_item_id);
        comment on table pgrecs.semantic_neighbors is
            'Top-N semantic neighbours per item of every maintained model other than the default (candidate, '
            'standby); the default model''s lists are pgrecs.item_neighbors rows with signal ''semantic''.';

        -- functions whose signature gains the model (re-created by sql/030_semantic.sql)
        drop function if exists pgrecs.refresh_semantic_neighbors(bigint[], integer, boolean);
        drop function if exists pgrecs.remove_semantic_neighbors(bigint[], integer);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        drop view if exists pgrecs.semantic_lists;
        drop function if exists pgrecs.refresh_semantic_neighbors(bigint[], integer, boolean, smallint);
        drop function if exists pgrecs.remove_semantic_neighbors(bigint[], integer, smallint);
        drop table if exists pgrecs.semantic_neighbors;
        drop index if exists pgrecs.embedding_models_one_standby;
        update pgrecs.embedding_models set state = 'retired' where state = 'standby';
        alter table pgrecs.embedding_models drop constraint if exists embedding_models_state_check;
        alter table pgrecs.embedding_models add constraint embedding_models_state_check
            check (state in ('candidate', 'active', 'retired'));
        """
    )
