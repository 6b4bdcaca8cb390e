"""Loader warnings: a record kept with a field left empty, or superseded by a later line.

A record whose optional field does not parse (a price, a stock level, an image URL) is loaded
without that field, and the field, its raw value and the reason are kept here. The earlier lines
of an id repeated within one file are kept here too, as superseded by the line that won.
ingest_batches counts both per batch. The parsers themselves live in sql/020_ingest.sql.

Revision ID: 0021_load_warnings
Revises: 0020_tie_keys
Create Date: 2026-12-02
"""

from alembic import op

revision = "0021_load_warnings"
down_revision = "0020_tie_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create table pgrecs.ingest_warnings (
            warning_id bigint generated always as identity primary key,
            tenant_id text not null default 'default' references pgrecs.tenants,
            batch_id bigint references pgrecs.ingest_batches on delete set null,
            kind text not null check (kind in ('items', 'events')),
            source text not null,
            source_sha256 text not null,
            line_number integer not null,
            field text not null,
            reason text not null,
            value text,
            created_at timestamptz not null default now(),
            unique (tenant_id, kind, source_sha256, line_number, field)
        );
        comment on table pgrecs.ingest_warnings is
            'Loaded records with a field left empty (field, raw value, reason), and earlier lines superseded by a later line for the same id; re-loading a file replaces its rows here.';

        alter table pgrecs.ingest_batches
            add column superseded integer not null default 0,
            add column duplicates integer not null default 0,
            add column warnings integer not null default 0;
        comment on column pgrecs.ingest_batches.superseded is
            'Item lines replaced by a later line for the same external_id in the same load (the last line wins).';
        comment on column pgrecs.ingest_batches.duplicates is
            'Event lines repeating an event already loaded earlier in the same load (stored once).';
        comment on column pgrecs.ingest_batches.warnings is 'Fields left empty in loaded records (see pgrecs.ingest_warnings).';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        alter table pgrecs.ingest_batches drop column superseded, drop column duplicates, drop column warnings;
        drop table pgrecs.ingest_warnings;
        """
    )
