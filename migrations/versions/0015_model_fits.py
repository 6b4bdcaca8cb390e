"""Model fits: the lineage of the learned collaborative model (EASE).

One row per fit that `pgrecs refresh` (inline, or `--cf` on its own schedule) attempted for a
tenant: when, on what data (the events high-water mark and the matrix's counts), how (dense
or by blocks, its parameters, the library versions), what it cost (seconds, peak memory, the
estimate the memory guard checked) and what came of it (published, or refused by the guard).
`pgrecs models fits` lists them.

Revision ID: 0015_model_fits
Revises: 0012_sequence_signal
Create Date: 2026-12-02
"""

from alembic import op

revision = "0015_model_fits"
down_revision = "0012_sequence_signal"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create table pgrecs.model_fits (
            fit_id bigint generated always as identity primary key,
            tenant_id text not null references pgrecs.tenants (tenant_id) on delete cascade,
            signal text not null,
            method text not null check (method in ('dense', 'blocks')),
            status text not null check (status in ('published', 'refused')),
            started_at timestamptz not null,
            finished_at timestamptz not null default now(),
            last_event_id bigint,
            users integer not null,
            items integer not null,
            interactions bigint not null,
            embedded_items integer not null default 0,
            parameters jsonb not null,
            library_versions jsonb not null,
            fit_seconds double precision,
            peak_rss_bytes bigint,
            estimated_bytes bigint not null,
            memory_limit_bytes bigint not null,
            neighbor_rows bigint,
            note text
        );
        create index model_fits_tenant_finished on pgrecs.model_fits (tenant_id, finished_at desc);
        comment on table pgrecs.model_fits is
            'Lineage of the learned collaborative model: one row per fit attempted by pgrecs refresh (see app/signals/ease_fit.py).';
        comment on column pgrecs.model_fits.signal is 'The signal whose neighbour lists the fit publishes.';
        comment on column pgrecs.model_fits.last_event_id is
            'Events high-water mark: the last event id the interaction matrix of the fit covers.';
        comment on column pgrecs.model_fits.peak_rss_bytes is
            'Resident memory high-water mark of the fitting process during the fit.';
        comment on column pgrecs.model_fits.estimated_bytes is
            'The memory the guard estimated before anything was allocated; a fit above memory_limit_bytes is refused.';
        """
    )


def downgrade() -> None:
    op.execute("drop table if exists pgrecs.model_fits;")
