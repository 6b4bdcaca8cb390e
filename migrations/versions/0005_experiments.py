"""Evaluation and online experiments: experiments, variants, evaluation runs and results.

Revision ID: 0005_experiments
Revises: 0004_scoring
Create Date: 2026-11-25
"""

from alembic import op

revision = "0005_experiments"
down_revision = "0004_scoring"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- An online experiment: users are split between variants by a salted hash of their
        -- external id (recs.assign_variant), so assignment needs no state and never flips.
        create table pgrecs.experiments (
            experiment_id bigint generated always as identity primary key,
            tenant_id text not null default 'default' references pgrecs.tenants,
            name text not null check (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$'),
            description text,
            -- the hash salt; defaults to the name, change it to re-randomise a re-run
            salt text not null,
            status text not null default 'running' check (status in ('draft', 'running', 'stopped')),
            started_at timestamptz not null default now(),
            stopped_at timestamptz,
            created_at timestamptz not null default now(),
            unique (tenant_id, name),
            check (stopped_at is null or stopped_at >= started_at)
        );
        comment on table pgrecs.experiments is
            'Online A/B experiments; events of assigned users between started_at and stopped_at count.';

        -- A variant points at a placement configuration (a row of the placements table, by name),
        -- so the variant is "serve with these weights and rules".
        create table pgrecs.experiment_variants (
            variant_id bigint generated always as identity primary key,
            tenant_id text not null default 'default' references pgrecs.tenants,
            experiment_id bigint not null references pgrecs.experiments on delete cascade,
            name text not null,
            placement text not null,
            -- share of traffic, relative to the other variants' allocations
            allocation real not null default 1 check (allocation > 0),
            is_control boolean not null default false,
            position smallint not null,
            unique (experiment_id, name),
            unique (experiment_id, position)
        );
        create unique index experiment_variants_one_control
            on pgrecs.experiment_variants (experiment_id) where is_control;
        comment on table pgrecs.experiment_variants is
            'Variants of an experiment, each serving one placement configuration; position orders the hash buckets.';

        -- Offline evaluation runs (pgrecs evaluate) and their metric values, so runs can be compared in SQL.
        create table pgrecs.evaluation_runs (
            run_id bigint generated always as identity primary key,
            tenant_id text not null default 'default' references pgrecs.tenants,
            dataset text,
            protocol text not null check (protocol in ('leave-last-out', 'time-split')),
            params jsonb not null default '{}',
            split_stats jsonb not null default '{}',
            best_config jsonb,
            started_at timestamptz not null default now(),
            finished_at timestamptz
        );
        comment on table pgrecs.evaluation_runs is 'One row per `pgrecs evaluate` run: protocol, parameters, split sizes, tuned configuration.';

        create table pgrecs.evaluation_results (
            tenant_id text not null default 'default' references pgrecs.tenants,
            run_id bigint not null references pgrecs.evaluation_runs on delete cascade,
            strategy text not null,
            -- 'all', 'cold_items', 'new_users', or 'validation'
            slice text not null,
            metric text not null,
            k integer not null default 0,
            value double precision,
            users integer not null,
            primary key (run_id, strategy, slice, metric, k)
        );
        comment on table pgrecs.evaluation_results is
            'Metric values per evaluation run, strategy and slice (k = 0 for list-independent metrics).';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        drop table if exists pgrecs.evaluation_results;
        drop table if exists pgrecs.evaluation_runs;
        drop table if exists pgrecs.experiment_variants;
        drop table if exists pgrecs.experiments;
        """
    )
