-- Replacing one signal's neighbour lists from a relation, atomically.
-- The delete and the insert run in the caller's transaction: a reader (any statement of
-- recs.*, which reads pgrecs.item_neighbors) sees every old list or every new one, never a half.

create or replace function pgrecs.publish_signal_lists(signal_name text, source regclass, items regclass default null)
returns table (tenant_id text, lists integer, list_rows integer)
language plpgsql
volatile
as $$
-- source: any relation of (tenant_id, item_id, neighbor_item_id, score, rank), a dbt mart or a
-- temporary table. Without items, every tenant present in source gets all its lists of the
-- signal replaced (the other tenants' lists are kept). With items, a relation of (tenant_id,
-- item_id): exactly those items' lists are replaced, from source's rows of those items (an item
-- without rows there loses its list), and lists counts them.
declare
    scope text := coalesce(items, source)::text;
begin
    if not exists (select 1 from pgrecs.signals s where s.signal = signal_name and s.kind = 'neighbors') then
        raise exception 'signal % is not a neighbour signal of pgrecs.signals', coalesce(signal_name, 'null')
            using errcode = '22023';
    end if;
    if items is null then
        execute format(
            'delete from pgrecs.item_neighbors as n where n.signal = $1'
            ' and n.tenant_id in (select distinct s.tenant_id from %s as s)', source)
        using signal_name;
    else
        execute format(
            'delete from pgrecs.item_neighbors as n using (select distinct x.tenant_id, x.item_id from %s as x) as x'
            ' where n.signal = $1 and n.tenant_id = x.tenant_id and n.item_id = x.item_id', items)
        using signal_name;
    end if;
    return query execute format(
        'with inserted as ('
        ' insert into pgrecs.item_neighbors (tenant_id, signal, item_id, neighbor_item_id, score, rank)'
        ' select s.tenant_id, $1, s.item_id, s.neighbor_item_id, s.score, s.rank from %1$s as s'
        ' where $2 or exists (select 1 from %2$s as x where x.tenant_id = s.tenant_id and x.item_id = s.item_id)'
        ' returning item_neighbors.tenant_id, item_neighbors.item_id),'
        ' replaced as ('
        ' select x.tenant_id, count(distinct x.item_id)::integer as lists from %2$s as x where not $2 group by 1'
        ' union all'
        ' select i.tenant_id, count(distinct i.item_id)::integer from inserted as i where $2 group by 1)'
        ' select coalesce(r.tenant_id, w.tenant_id), coalesce(r.lists, 0), coalesce(w.list_rows, 0)'
        ' from replaced as r'
        ' full join (select i.tenant_id, count(*)::integer as list_rows from inserted as i group by 1) as w'
        '     on w.tenant_id = r.tenant_id'
        ' order by 1', source, scope)
    using signal_name, items is null;
end
$$;
comment on function pgrecs.publish_signal_lists(text, regclass, regclass) is
    'Replaces the neighbour lists of one registered signal from source (tenant_id, item_id, neighbor_item_id, score, rank): of every tenant present in source, or, given items (tenant_id, item_id), of exactly those items. In the caller''s transaction (readers see the old lists or the new ones); returns the lists replaced and the rows written per tenant.';

create or replace function pgrecs.replace_signal_lists(signal_name text)
returns table (tenant_id text, list_rows integer)
language plpgsql
volatile
as $$
-- Source: pg_temp.<signal_name>_neighbors (tenant_id, item_id, neighbor_item_id, score, rank),
-- created by the caller. Every tenant present there gets its lists of the signal replaced; the
-- other tenants' lists are kept.
declare
    source regclass := to_regclass(format('pg_temp.%I', signal_name || '_neighbors'));
begin
    if source is null then
        raise exception 'replace_signal_lists: no temporary table %_neighbors', signal_name;
    end if;
    return query select r.tenant_id, r.list_rows from pgrecs.publish_signal_lists(signal_name, source) as r;
end
$$;
comment on function pgrecs.replace_signal_lists(text) is
    'Replaces the neighbour lists of one signal for every tenant present in pg_temp.<signal>_neighbors, in the caller''s transaction (readers see the old lists or the new ones); returns the rows written per tenant. Called by `pgrecs refresh --cf`.';
