-- Replacing one signal's neighbour lists from a temporary table, atomically.
-- The delete and the insert run in the caller's transaction: a reader (any statement of
-- recs.*, which reads pgrecs.item_neighbors) sees every old list or every new one, never a half.

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
    execute format(
        'delete from pgrecs.item_neighbors as n where n.signal = $1'
        ' and n.tenant_id in (select distinct s.tenant_id from %s as s)', source)
    using signal_name;
    return query execute format(
        'with inserted as ('
        ' insert into pgrecs.item_neighbors (tenant_id, signal, item_id, neighbor_item_id, score, rank)'
        ' select s.tenant_id, $1, s.item_id, s.neighbor_item_id, s.score, s.rank from %s as s'
        ' returning item_neighbors.tenant_id)'
        ' select i.tenant_id, count(*)::integer from inserted as i group by i.tenant_id order by 1', source)
    using signal_name;
end
$$;
comment on function pgrecs.replace_signal_lists(text) is
    'Replaces the neighbour lists of one signal for every tenant present in pg_temp.<signal>_neighbors, in the caller''s transaction (readers see the old lists or the new ones); returns the rows written per tenant. Called by pgrecs.publish_signals and by `pgrecs refresh --cf`.';
