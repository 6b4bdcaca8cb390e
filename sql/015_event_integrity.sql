-- Referential integrity of pgrecs.events, enforced once per statement instead of once per row.
-- The event log is append-only and bulk-loaded; per-row foreign-key triggers cost more than the
-- insert itself. These statement-level triggers give the same guarantees: every event's user and
-- item exist in the event's tenant and its type is known (checked, and the referenced rows
-- key-share locked against concurrent deletion, as a foreign key would), and deleting items or
-- users deletes their events.

create or replace function pgrecs.check_event_references()
returns trigger
language plpgsql
security definer  -- locks need UPDATE rights the API role does not have; it only reads and locks
set search_path = pg_catalog
as $$
declare
    bad record;
begin
    perform 1 from pgrecs.items i
    where i.item_id in (select distinct a.item_id from added a)
    for key share;
    perform 1 from pgrecs.users u
    where u.user_id in (select distinct a.user_id from added a)
    for key share;
    select a.event_id, a.tenant_id, a.user_id, a.item_id, a.event_type into bad
    from added a
    where not exists (select 1 from pgrecs.items i where i.item_id = a.item_id and i.tenant_id = a.tenant_id)
       or not exists (select 1 from pgrecs.users u where u.user_id = a.user_id and u.tenant_id = a.tenant_id)
       or not exists (select 1 from pgrecs.event_types t where t.event_type = a.event_type)
       or not exists (select 1 from pgrecs.tenants t where t.tenant_id = a.tenant_id)
    limit 1;
    if found then
        raise exception using
            errcode = 'foreign_key_violation',
            message = format('event references a missing user, item, type or tenant (tenant %s, user %s, item %s, type %s)',
                             bad.tenant_id, bad.user_id, bad.item_id, bad.event_type);
    end if;
    return null;
end
$$;
comment on function pgrecs.check_event_references() is
    'Statement-level foreign-key check of pgrecs.events: users, items (same tenant), event types and tenants must exist.';

create or replace trigger events_check_references_on_insert
    after insert on pgrecs.events
    referencing new table as added
    for each statement execute function pgrecs.check_event_references();

create or replace trigger events_check_references_on_update
    after update on pgrecs.events
    referencing new table as added
    for each statement execute function pgrecs.check_event_references();

create or replace function pgrecs.delete_events_of_deleted_rows()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog
as $$
begin
    if tg_table_name = 'items' then
        delete from pgrecs.events e using gone g where e.item_id = g.item_id;
    else
        delete from pgrecs.events e using gone g where e.user_id = g.user_id;
    end if;
    return null;
end
$$;
comment on function pgrecs.delete_events_of_deleted_rows() is
    'Deleting items or users deletes their events (the cascade a foreign key would do, once per statement).';

create or replace trigger items_delete_events
    after delete on pgrecs.items
    referencing old table as gone
    for each statement execute function pgrecs.delete_events_of_deleted_rows();

create or replace trigger users_delete_events
    after delete on pgrecs.users
    referencing old table as gone
    for each statement execute function pgrecs.delete_events_of_deleted_rows();
