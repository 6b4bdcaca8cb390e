-- Publishing the dbt marts into the migration-owned tables that scoring reads.
-- dbt rebuilds its relations with drop ... cascade, so request-time SQL never reads them; `pgrecs
-- refresh` calls pgrecs.publish_signals in one transaction after `dbt build` (and EASE).

create or replace function pgrecs.publish_signals(last_event_ids jsonb, full_refresh boolean)
returns table (tenant_id text, cooccurrence_items integer, cooccurrence_rows integer, ease_rows integer,
               sequence_rows integer, signal_rows integer)
language plpgsql
volatile
as $$
#variable_conflict use_column
-- last_event_ids: {"<tenant>": <max event_id seen before dbt build>, ...}
-- EASE rows are taken from the temporary table pg_temp.ease_neighbors when the caller created it
-- (tenant_id, item_id, neighbor_item_id, score, rank); tenants present there get their 'ease'
-- lists replaced. Co-occurrence rows likewise come from pg_temp.cooccurrence_neighbors when the
-- caller created it (computed in Python by app/signals/cooccurrence.py for the touched items),
-- else from the dbt mart recs_marts.fct_item_cooccurrence. Next-item lists come from the dbt mart
-- recs_marts.fct_item_sequence when the caller created pg_temp.sequence_neighbors (a view of the
-- mart, made when this run rebuilt it): every tenant's 'sequence' lists are then replaced.
declare
    has_ease boolean := to_regclass('pg_temp.ease_neighbors') is not null;
    has_sequence boolean := to_regclass('pg_temp.sequence_neighbors') is not null;
    has_cooccurrence boolean := to_regclass('pg_temp.cooccurrence_neighbors') is not null;
begin
    create temporary table if not exists publish_counts (
        tenant_id text primary key, cooccurrence_items integer default 0, cooccurrence_rows integer default 0,
        ease_rows integer default 0, sequence_rows integer default 0, signal_rows integer default 0
    ) on commit drop;
    truncate publish_counts;

    -- co-occurrence: replace the lists of the items this run recomputed
    with touched as (
        select t.tenant_id, t.item_id from recs_intermediate.int_items_cooccurrence_touched as t
    ), removed as (
        delete from pgrecs.item_neighbors as n
        using touched
        where n.signal = 'cooccurrence' and n.tenant_id = touched.tenant_id and n.item_id = touched.item_id
    )
    insert into publish_counts (tenant_id, cooccurrence_items)
    select touched.tenant_id, count(*) from touched group by touched.tenant_id;

    if has_cooccurrence then
        with inserted as (
            insert into pgrecs.item_neighbors (tenant_id, signal, item_id, neighbor_item_id, score, rank)
            select f.tenant_id, 'cooccurrence', f.item_id, f.neighbor_item_id, f.score, f.rank
            from pg_temp.cooccurrence_neighbors as f
            inner join recs_intermediate.int_items_cooccurrence_touched as t
                on t.tenant_id = f.tenant_id and t.item_id = f.item_id
            returning item_neighbors.tenant_id
        )
        insert into publish_counts as c (tenant_id, cooccurrence_rows)
        select inserted.tenant_id, count(*) from inserted group by inserted.tenant_id
        on conflict on constraint publish_counts_pkey do update set cooccurrence_rows = excluded.cooccurrence_rows;
    else
        with inserted as (
            insert into pgrecs.item_neighbors (tenant_id, signal, item_id, neighbor_item_id, score, rank)
            select f.tenant_id, 'cooccurrence', f.item_id, f.neighbor_item_id, f.score, f.rank
            from recs_marts.fct_item_cooccurrence as f
            inner join recs_intermediate.int_items_cooccurrence_touched as t
                on t.tenant_id = f.tenant_id and t.item_id = f.item_id
            returning item_neighbors.tenant_id
        )
        insert into publish_counts as c (tenant_id, cooccurrence_rows)
        select inserted.tenant_id, count(*) from inserted group by inserted.tenant_id
        on conflict on constraint publish_counts_pkey do update set cooccurrence_rows = excluded.cooccurrence_rows;
    end if;

    if has_ease then
        insert into publish_counts as c (tenant_id, ease_rows)
        select r.tenant_id, r.list_rows from pgrecs.replace_signal_lists('ease') as r
        on conflict on constraint publish_counts_pkey do update set ease_rows = excluded.ease_rows;
    end if;

    if has_sequence then
        delete from pgrecs.item_neighbors as n where n.signal = 'sequence';
        with inserted as (
            insert into pgrecs.item_neighbors (tenant_id, signal, item_id, neighbor_item_id, score, rank)
            select q.tenant_id, 'sequence', q.item_id, q.neighbor_item_id, q.score, q.rank
            from pg_temp.sequence_neighbors as q
            returning item_neighbors.tenant_id
        )
        insert into publish_counts as c (tenant_id, sequence_rows)
        select inserted.tenant_id, count(*) from inserted group by inserted.tenant_id
        on conflict on constraint publish_counts_pkey do update set sequence_rows = excluded.sequence_rows;
    end if;

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
    insert into publish_counts as c (tenant_id, signal_rows)
    select upserted.tenant_id, count(*) from upserted group by upserted.tenant_id
    on conflict on constraint publish_counts_pkey do update set signal_rows = excluded.signal_rows;

    insert into pgrecs.refresh_state as r (tenant_id, last_event_id, last_full_at, last_refresh_at, last_mode, items_recomputed)
    select ids.key, ids.value::bigint, case when full_refresh then now() end, now(),
        case when full_refresh then 'full' else 'incremental' end,
        coalesce((select c.cooccurrence_items from publish_counts as c where c.tenant_id = ids.key), 0)
    from jsonb_each_text(last_event_ids) as ids
    where exists (select 1 from pgrecs.tenants as t where t.tenant_id = ids.key)
    on conflict (tenant_id) do update set
        last_event_id = excluded.last_event_id,
        last_full_at = coalesce(excluded.last_full_at, r.last_full_at),
        last_refresh_at = excluded.last_refresh_at,
        last_mode = excluded.last_mode,
        items_recomputed = excluded.items_recomputed;

    return query select c.tenant_id, c.cooccurrence_items, c.cooccurrence_rows, c.ease_rows, c.sequence_rows, c.signal_rows
        from publish_counts as c order by c.tenant_id;
end
$$;
comment on function pgrecs.publish_signals(jsonb, boolean) is
    'Copies the dbt marts (co-occurrence lists of the touched items, from pg_temp.cooccurrence_neighbors when present, popularity, trending, audit quality), pg_temp.sequence_neighbors (next-item lists, every tenant''s replaced) and pg_temp.ease_neighbors into pgrecs.item_neighbors / pgrecs.item_signals, and records the refresh state. Called by `pgrecs refresh` in one transaction.';

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
