"""Signals read by scoring: item neighbours (semantic, co-occurrence, learned) and per-item signals.

Revision ID: 0003_signals
Revises: 0002_semantic
Create Date: 2026-11-25
"""

from alembic import op

revision = "0003_signals"
down_revision = "0002_semantic"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- One neighbour-list shape for every item-to-item signal, so scoring reads any of them.
        create table pgrecs.item_neighbors (
            tenant_id text not null default 'default' references pgrecs.tenants,
            signal text not null check (signal in ('semantic', 'cooccurrence', 'ease')),
            item_id bigint not null references pgrecs.items on delete cascade,
            neighbor_item_id bigint not null references pgrecs.items on delete cascade,
            score real not null,
            rank smallint not null check (rank >= 1),
            computed_at timestamptz not null default now(),
            primary key (tenant_id, signal, item_id, neighbor_item_id)
        );
        create index item_neighbors_ranked on pgrecs.item_neighbors (tenant_id, signal, item_id, rank)
            include (neighbor_item_id, score);
        create index item_neighbors_reverse on pgrecs.item_neighbors (neighbor_item_id);
        comment on table pgrecs.item_neighbors is
            'Top-N neighbours per item and signal (semantic from embeddings, cooccurrence and ease from events).';

        -- Per-item signals published by `pgrecs refresh` from the dbt marts.
        create table pgrecs.item_signals (
            tenant_id text not null default 'default' references pgrecs.tenants,
            item_id bigint primary key references pgrecs.items on delete cascade,
            popularity real not null default 0,
            trending real not null default 0,
            category_popularity_rank integer,
            quality_score real,
            quality_flags text[] not null default '{}',
            refreshed_at timestamptz not null default now()
        );
        create index item_signals_popularity on pgrecs.item_signals (tenant_id, popularity desc);
        comment on table pgrecs.item_signals is
            'Time-decayed popularity, trending score and metadata quality per item, published from the dbt marts.';

        -- Where the last `pgrecs refresh` left off, per tenant: the incremental co-occurrence
        -- refresh redoes only the lists touched by events after last_event_id.
        create table pgrecs.refresh_state (
            tenant_id text primary key references pgrecs.tenants,
            last_event_id bigint not null,
            last_full_at timestamptz,
            last_refresh_at timestamptz not null default now(),
            last_mode text not null check (last_mode in ('full', 'incremental')),
            items_recomputed integer not null default 0,
            ease_items integer,
            ease_note text
        );
        comment on table pgrecs.refresh_state is
            'Per tenant, the last event folded into the published signals and how the last refresh ran.';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        drop table if exists pgrecs.refresh_state;
        drop table if exists pgrecs.item_signals;
        drop table if exists pgrecs.item_neighbors;
        """
    )
