-- Helpers every later file uses. Applied first (files run in name order).

create or replace function pgrecs.current_tenant()
returns text
language sql
stable parallel safe
as $$
    select coalesce(nullif(current_setting('pgrecs.tenant', true), ''), 'default')
$$;
comment on function pgrecs.current_tenant() is
    'The tenant of this session (GUC pgrecs.tenant), ''default'' when unset.';
