-- Helpers every later file uses (the session's tenant, the category key). Applied first (files run
-- in name order).

create or replace function pgrecs.current_tenant()
returns text
language sql
stable parallel safe
as $$
    select coalesce(nullif(current_setting('pgrecs.tenant', true), ''), 'default')
$$;
comment on function pgrecs.current_tenant() is
    'The current tenant (setting pgrecs.tenant), ''default'' when unset.';

-- The generated column pgrecs.items.category_key (migration 0009) is computed by this function.
create or replace function pgrecs.category_key(category_path text[])
returns text
language sql
immutable parallel safe
as $$
    select pg_catalog.array_to_string(category_path, pg_catalog.chr(31))
$$;
comment on function pgrecs.category_key(text[]) is
    'A category path as one text key (levels joined by chr(31)): items.category_key, compared '
    'with text equality, which is leakproof and so usable by an index under row-level security.';
