"""Foundation: extensions, schemas, tenants, catalog, users, events, ingestion bookkeeping.

Revision ID: 0001_foundation
Revises:
Create Date: 2026-11-25
"""

from alembic import op

revision = "0001_foundation"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create extension if not exists vector;
        create extension if not exists pg_trgm;
        create extension if not exists unaccent;

        -- pgrecs: private tables and helpers. recs: the public API of functions and views.
        create schema if not exists pgrecs;
        create schema if not exists recs;

        create table pgrecs.tenants (
            tenant_id text primary key check (tenant_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
            name text not null,
            created_at timestamptz not null default now()
        );
        insert into pgrecs.tenants (tenant_id, name) values ('default', 'Default tenant');

        create table pgrecs.items (
            item_id bigint generated always as identity primary key,
            tenant_id text not null default 'default' references pgrecs.tenants,
            external_id text not null,
            title text,
            description text,
            brand text,
            category_path text[] not null default '{}',
            attributes jsonb not null default '{}',
            price numeric(14, 4) check (price >= 0),
            currency text check (currency ~ '^[A-Z]{3}$'),
            stock integer,
            margin numeric(9, 4),
            image_url text,
            active boolean not null default true,
            created_at timestamptz not null default now(),
            updated_at timestamptz not null default now(),
            unique (tenant_id, external_id)
        );
        comment on table pgrecs.items is 'The catalog: one row per item and tenant, upserted by external_id. Raw text as loaded; dbt cleans it.';

        create table pgrecs.users (
            user_id bigint generated always as identity primary key,
            tenant_id text not null default 'default' references pgrecs.tenants,
            external_id text not null,
            attributes jsonb not null default '{}',
            created_at timestamptz not null default now(),
            unique (tenant_id, external_id)
        );
        comment on table pgrecs.users is 'Users seen in events, created on first event.';

        create table pgrecs.event_types (
            event_type text primary key,
            default_weight real not null,
            description text not null
        );
        insert into pgrecs.event_types (event_type, default_weight, description) values
            ('impression', 0, 'an item was shown in a recommendation list'),
            ('view', 1, 'item page viewed'),
            ('click', 2, 'a recommended item was clicked'),
            ('rating', 3, 'explicit rating; value holds the rating'),
            ('add_to_cart', 4, 'item added to the cart'),
            ('purchase', 8, 'item bought; value holds the revenue');
        comment on table pgrecs.event_types is 'Allowed event types and their default weight in user histories and co-occurrence.';

        create table pgrecs.events (
            event_id bigint generated always as identity primary key,
            tenant_id text not null default 'default',
            -- No per-row foreign keys on this append-only log: a per-row RI check costs more than the
            -- insert itself at bulk-load rates. sql/015_event_integrity.sql enforces the same rules once
            -- per statement (check and key-share lock the referenced users, items and types; cascade
            -- deletes through transition tables).
            user_id bigint not null,
            item_id bigint not null,
            event_type text not null,
            value double precision,
            occurred_at timestamptz not null,
            session_id text,
            request_id text,
            -- natural key of the event (md5 of user, item, type, time, value, session, or the source's
            -- own event id): loading the same events twice stores them once.
            dedup_key uuid not null,
            batch_id bigint,
            created_at timestamptz not null default now(),
            unique (tenant_id, dedup_key)
        );
        create index events_user_time on pgrecs.events (tenant_id, user_id, occurred_at desc);
        create index events_item on pgrecs.events (tenant_id, item_id);
        -- BRIN, not btree: time ranges over an append-mostly log prune well, and a btree on time
        -- cost 18% of bulk-load throughput (random-order inserts on backfills).
        create index events_time on pgrecs.events using brin (occurred_at);
        comment on table pgrecs.events is 'User-item interactions, append-only; the source of every behavioural signal.';

        create table pgrecs.ingest_batches (
            batch_id bigint generated always as identity primary key,
            tenant_id text not null default 'default' references pgrecs.tenants,
            kind text not null check (kind in ('items', 'events')),
            source text not null,
            source_sha256 text not null,
            first_line integer not null,
            last_line integer not null,
            inserted integer not null default 0,
            updated integer not null default 0,
            unchanged integer not null default 0,
            rejected integer not null default 0,
            started_at timestamptz not null default now(),
            finished_at timestamptz
        );
        comment on table pgrecs.ingest_batches is 'One row per committed ingestion batch (a slice of a file loaded in one transaction).';

        create table pgrecs.ingest_rejects (
            reject_id bigint generated always as identity primary key,
            tenant_id text not null default 'default' references pgrecs.tenants,
            batch_id bigint references pgrecs.ingest_batches on delete set null,
            kind text not null check (kind in ('items', 'events')),
            source text not null,
            source_sha256 text not null,
            line_number integer not null,
            raw text not null,
            reason text not null,
            created_at timestamptz not null default now(),
            unique (tenant_id, kind, source_sha256, line_number)
        );
        comment on table pgrecs.ingest_rejects is 'Every rejected input row with its line number and reason; re-loading a file replaces its rows here.';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        drop schema if exists recs cascade;
        drop schema if exists pgrecs cascade;
        """
    )
