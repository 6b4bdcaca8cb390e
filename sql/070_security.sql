-- Security: grants for the API role, row-level security per tenant, API key lookup.
--
-- Idempotent, re-applied on every `pgrecs migrate` after the other sql/ files, so it covers every
-- table in schema pgrecs that has a tenant_id column, including tables added by later migrations.
-- The role pgrecs_api and the table pgrecs.api_keys come from migrations/versions/0006_security.py.
--
-- Model: the HTTP API runs as pgrecs_api (no BYPASSRLS, not a table owner) and sets the GUC
-- pgrecs.tenant from its API key's tenant; the policy pgrecs_tenant_isolation lets it see and
-- write only rows of that tenant, and nothing at all when the GUC is unset or empty (fail closed).
-- Tables are FORCE ROW LEVEL SECURITY: a non-superuser owner (the CLI, dbt, migrations) is also
-- confined to pgrecs.tenant when it sets one, and sees every tenant when it sets none.

-------------------------------------------------------------------------------------------------
-- API key lookup: the one SECURITY DEFINER function. The API cannot read pgrecs.api_keys; it
-- can only ask which active key has this hash, before it knows the tenant.
-------------------------------------------------------------------------------------------------

create or replace function pgrecs.api_key_lookup(key_sha256 bytea)
returns table (key_id bigint, tenant_id text, scopes text[])
language sql
stable parallel safe
security definer
set search_path = pg_catalog, pg_temp
set "pgrecs.tenant" = ''
as $$
    select k.key_id, k.tenant_id, k.scopes
    from pgrecs.api_keys as k
    where k.key_sha256 = $1
      and k.revoked_at is null
$$;
comment on function pgrecs.api_key_lookup(bytea) is
    'The active API key with this sha256 (key id, tenant, scopes), or no row. SECURITY DEFINER: the API role cannot read pgrecs.api_keys itself.';
revoke all on function pgrecs.api_key_lookup(bytea) from public;
grant execute on function pgrecs.api_key_lookup(bytea) to pgrecs_api;

-------------------------------------------------------------------------------------------------
-- Grants: what the API needs (read the catalog and signals, write items, users, events, the
-- embedding queue and the recommendation log), nothing on the dbt schemas, nothing on keys.
-------------------------------------------------------------------------------------------------

grant usage on schema pgrecs, recs to pgrecs_api;
grant select, insert, update, delete on all tables in schema pgrecs to pgrecs_api;
grant usage, select on all sequences in schema pgrecs to pgrecs_api;
grant execute on all functions in schema recs to pgrecs_api;
grant execute on all functions in schema pgrecs to pgrecs_api;
revoke all on pgrecs.api_keys from pgrecs_api;
-- console sessions only through their SECURITY DEFINER functions (sql/068_console_sessions.sql);
-- the rule audit trail is written by its trigger alone (sql/062_rules.sql), never edited
revoke all on pgrecs.console_sessions from pgrecs_api;
revoke insert, update, delete, truncate on pgrecs.business_rule_changes from pgrecs_api;
revoke execute on function pgrecs.api_key_lookup(bytea) from public;

do $$
declare
    t text;
begin
    -- reference data: read-only for the API
    foreach t in array array['pgrecs.tenants', 'pgrecs.event_types', 'pgrecs.embedding_models',
                             'pgrecs.placement_defaults', 'pgrecs.signals'] loop
        if to_regclass(t) is not null then
            execute format('revoke insert, update, delete, truncate on %s from pgrecs_api', t);
        end if;
    end loop;
    -- /readyz compares the schema revision with the code's head
    if to_regclass('public.alembic_version') is not null then
        execute 'grant select on public.alembic_version to pgrecs_api';
    end if;
end
$$;

-------------------------------------------------------------------------------------------------
-- Row-level security on every pgrecs table with a tenant_id column.
-------------------------------------------------------------------------------------------------

do $$
declare
    t record;
begin
    for t in
        select c.oid::regclass as rel, pg_catalog.pg_get_userbyid(c.relowner) as owner
        from pg_catalog.pg_class as c
        join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
        join pg_catalog.pg_attribute as a on a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped
        where n.nspname = 'pgrecs'
          and c.relkind in ('r', 'p')
          and not c.relispartition
    loop
        execute format('alter table %s enable row level security', t.rel);
        execute format('alter table %s force row level security', t.rel);
        execute format('drop policy if exists pgrecs_tenant_isolation on %s', t.rel);
        execute format(
            'create policy pgrecs_tenant_isolation on %s as permissive for all to pgrecs_api'
            ' using (tenant_id = pg_catalog.current_setting(''pgrecs.tenant'', true))'
            ' with check (tenant_id = pg_catalog.current_setting(''pgrecs.tenant'', true))', t.rel);
        execute format('drop policy if exists pgrecs_owner_tenant on %s', t.rel);
        execute format(
            'create policy pgrecs_owner_tenant on %s as permissive for all to %I'
            ' using (coalesce(pg_catalog.current_setting(''pgrecs.tenant'', true), '''') in ('''', tenant_id))'
            ' with check (coalesce(pg_catalog.current_setting(''pgrecs.tenant'', true), '''') in ('''', tenant_id))',
            t.rel, t.owner);
    end loop;
end
$$;

-- Views run with their owner's rights unless security_invoker is on: keep RLS in force through
-- any view in the API's schemas.
do $$
declare
    v record;
begin
    for v in
        select c.oid::regclass as rel
        from pg_catalog.pg_class as c
        join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
        where n.nspname in ('pgrecs', 'recs') and c.relkind = 'v'
    loop
        execute format('alter view %s set (security_invoker = true)', v.rel);
    end loop;
end
$$;
