"""Security: API keys with scopes, the API's database role, row-level security per tenant.

Run-once DDL only: the table of API keys and the cluster-wide role `pgrecs_api` (NOLOGIN, no
BYPASSRLS). Grants, row-level security policies and the key lookup function live in the
idempotent sql/070_security.sql, re-applied at every migrate, so they also cover tables that
later migrations add.

Revision ID: 0006_security
Revises: 0005_experiments
Create Date: 2026-11-25
"""

from alembic import op

revision = "0006_security"
down_revision = "0005_experiments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- Roles are cluster-wide: create it once, never drop it from one database's downgrade.
        do $$
        begin
            if not exists (select 1 from pg_catalog.pg_roles where rolname = 'pgrecs_api') then
                create role pgrecs_api nologin nosuperuser nocreatedb nocreaterole noinherit nobypassrls;
            end if;
        end
        $$;
        comment on role pgrecs_api is
            'The role the HTTP API runs as (SET ROLE, or a login role granted it): no BYPASSRLS, so row-level security confines it to the tenant of its API key.';

        create table pgrecs.api_keys (
            key_id bigint generated always as identity primary key,
            tenant_id text not null default 'default' references pgrecs.tenants,
            name text not null default '' check (length(name) <= 200),
            -- the first characters of the key, shown by `pgrecs keys list` to tell keys apart
            key_prefix text not null,
            -- sha256 of the whole key (the key has 256 random bits, so a plain hash is enough);
            -- the key itself is printed once at creation and never stored
            key_sha256 bytea not null unique check (length(key_sha256) = 32),
            scopes text[] not null check (cardinality(scopes) > 0 and scopes <@ array['read', 'write', 'admin']),
            created_at timestamptz not null default now(),
            revoked_at timestamptz
        );
        create index api_keys_tenant on pgrecs.api_keys (tenant_id);
        comment on table pgrecs.api_keys is
            'API keys: sha256 of the key, tenant and scopes (read: recommendations, similar, search; write: events, items; admin: keys, placements, metrics).';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        drop function if exists pgrecs.api_key_lookup(bytea);
        drop table if exists pgrecs.api_keys;
        -- undo sql/070_security.sql on the tables that remain: policies, forced RLS, grants
        do $$
        declare
            t record;
        begin
            for t in
                select c.oid::regclass as rel
                from pg_catalog.pg_class as c
                join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
                where n.nspname = 'pgrecs' and c.relkind in ('r', 'p')
            loop
                execute format('drop policy if exists pgrecs_tenant_isolation on %s', t.rel);
                execute format('drop policy if exists pgrecs_owner_tenant on %s', t.rel);
                execute format('alter table %s no force row level security', t.rel);
                execute format('alter table %s disable row level security', t.rel);
            end loop;
            if exists (select 1 from pg_catalog.pg_roles where rolname = 'pgrecs_api') then
                execute 'revoke all on all tables in schema pgrecs from pgrecs_api';
                execute 'revoke all on all sequences in schema pgrecs from pgrecs_api';
                execute 'revoke all on all functions in schema pgrecs from pgrecs_api';
                execute 'revoke all on all functions in schema recs from pgrecs_api';
                execute 'revoke all on schema pgrecs from pgrecs_api';
                execute 'revoke all on schema recs from pgrecs_api';
                execute 'alter default privileges in schema pgrecs revoke all on tables from pgrecs_api';
                execute 'alter default privileges in schema pgrecs revoke all on sequences from pgrecs_api';
                if to_regclass('public.alembic_version') is not null then
                    execute 'revoke all on public.alembic_version from pgrecs_api';
                end if;
            end if;
        end
        $$;
        """
    )
