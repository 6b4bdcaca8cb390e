-- Publishing the dbt marts into the migration-owned tables that scoring reads.
-- dbt rebuilds its relations with drop ... cascade, so request-time SQL never reads them; `pgrecs
-- refresh` calls pgrecs.publish_signals in one transaction after `dbt build` (and EASE).

create or replace function pgrecs.publish_signals(last_event_ids jsonb, full_refresh boolean, publish jsonb)
returns table (tenant_id text, lists jsonb, signal_rows integer)
language plpgsql
volatile
as $$
#variable_conflict use_column
-- last_event_ids: {"<tenant>": <max event_id seen before dbt build>, ...}
-- publish: the neighbour lists to replace, one entry per signal of pgrecs.signals, each a source
-- relation of (tenant_id, item_id, neighbor_item_id, score, rank):
--   {"<signal>": "<relation>"}: the lists of every tenant present in the relation are replaced;
--   {"<signal>": {"source": "<relation>", "items": "<relation of (tenant_id, item_id)>"}}: only
--   the lists of those items are (an incremental refresh's recomputed items).
-- A signal absent from the map keeps its lists. Per tenant, lists is
-- {"<signal>": {"lists": <lists replaced>, "rows": <rows written>}, ...}.
declare
    e record;
begin
    create temporary table if not exists publish_counts (
        tenant_id text, signal text, lists integer, list_rows integer, recomputed boolean
    ) on commit drop;
    truncate publish_counts;

    if jsonb_typeof(coalesce(publish, '{}')) <> 'object' then
        raise exception 'publish must be a JSON object {signal: source relation}' using errcode = '22023';
    end if;
    for e in
        select m.key as signal,
               coalesce(m.value ->> 'source', m.value #>> '{}') as source,
               case when jsonb_typeof(m.value) = 'object' then m.value ->> 'items' end as items
        from jsonb_each(coalesce(publish, '{}')) as m
        order by m.key
    loop
        if to_regclass(e.source) is null or (e.items is not null and to_regclass(e.items) is null) then
            raise exception 'publish %: no relation %', e.signal,
                case when to_regclass(e.source) is null then coalesce(e.source, 'null') else e.items end
                using errcode = '42P01';
        end if;
        insert into publish_counts (tenant_id, signal, lists, list_rows, recomputed)
        select r.tenant_id, e.signal, r.lists, r.list_rows, e.items is not null
        from pgrecs.publish_signal_lists(e.signal, to_regclass(e.source), to_regclass(e.items)) as r;
    end loop;

    -- per-item signals: popularity, trending, category rank and the audit's quality
    with upserted as (
        insert into pgrecs.item_signals as s (
            tenant_id, item_id, popularity, trending, category_popularity_rank, popularity_percentile,
            quality_score, quality_flags, refreshed_at
        )
        select p.tenant_id, p.item_id,
            case when abs(p.popularity) < 1e-30 then 0 else p.popularity end,
            case when abs(p.trending) < 1e-30 then 0 else p.trending end, p.category_popularity_rank,
            p.popularity_percentile,
            a.quality_score, coalesce(a.quality_flags, '{}'), now()
        from recs_marts.fct_item_popularity as p
        left join recs_marts.fct_item_audit as a on a.tenant_id = p.tenant_id and a.item_id = p.item_id
        on conflict (item_id) do update set
            tenant_id = excluded.tenant_id,
            popularity = excluded.popularity,
            trending = excluded.trending,
            category_popularity_rank = excluded.category_popularity_rank,
            popularity_percentile = excluded.popularity_percentile,
            quality_score = excluded.quality_score,
            quality_flags = excluded.quality_flags,
            refreshed_at = excluded.refreshed_at
        returning s.tenant_id
    )
    insert into publish_counts (tenant_id, signal, list_rows)
    select upserted.tenant_id, null, count(*) from upserted group by upserted.tenant_id;

    insert into pgrecs.refresh_state as r (tenant_id, last_event_id, last_full_at, last_refresh_at, last_mode, items_recomputed)
    select ids.key, ids.value::bigint, case when full_refresh then now() end, now(),
        case when full_refresh then 'full' else 'incremental' end,
        coalesce((select sum(c.lists) from publish_counts as c where c.tenant_id = ids.key and c.recomputed), 0)
    from jsonb_each_text(last_event_ids) as ids
    where exists (select 1 from pgrecs.tenants as t where t.tenant_id = ids.key)
    on conflict (tenant_id) do update set
        last_event_id = excluded.last_event_id,
        last_full_at = coalesce(excluded.last_full_at, r.last_full_at),
        last_refresh_at = excluded.last_refresh_at,
        last_mode = excluded.last_mode,
        items_recomputed = excluded.items_recomputed;

    return query
    select c.tenant_id,
           coalesce(jsonb_object_agg(c.signal, jsonb_build_object('lists', c.lists, 'rows', c.list_rows))
                        filter (where c.signal is not null), '{}'),
           coalesce(sum(c.list_rows) filter (where c.signal is null), 0)::integer
    from publish_counts as c
    group by c.tenant_id
    order by c.tenant_id;
end
$$;
comment on function pgrecs.publish_signals(jsonb, boolean, jsonb) is
    'Publishes a refresh in one transaction: the neighbour lists named by publish ({signal: source relation}, or {signal: {"source": ..., "items": ...}} to replace only those items'' lists) into pgrecs.item_neighbors, the per-item signals (popularity, trending, audit quality) from the dbt marts into pgrecs.item_signals, and the refresh state. Returns per tenant the lists and rows written per signal and the item signal rows. Called by `pgrecs refresh`.';

-- Deleted items leave the neighbour lists: the statement trigger items_deleted_leave_neighbors on
-- pgrecs.items (migration 0011) runs this in place of per-row ON DELETE CASCADE references. The
-- signals are named so the first delete uses the (tenant_id, signal, item_id) index.
create or replace function pgrecs.remove_deleted_items_from_neighbors()
returns trigger
language plpgsql
as $$
begin
    delete from pgrecs.item_neighbors as n
    using deleted_items as d
    where n.tenant_id = d.tenant_id and n.item_id = d.item_id
        and n.signal in ('semantic', 'cooccurrence', 'ease', 'sequence');
    delete from pgrecs.item_neighbors as n
    using deleted_items as d
    where n.neighbor_item_id = d.item_id;
    return null;
end
$$;
comment on function pgrecs.remove_deleted_items_from_neighbors() is
    'Statement trigger on pgrecs.items: deleted items leave pgrecs.item_neighbors (their own lists and '
    'their places in other lists), in place of per-row ON DELETE CASCADE references.';
