-- Candidates, the first stage of pgrecs.rank_items (and of recs.why_not): the anchors'
-- neighbour lists, then popular, trending and popular-in-category items.
--
-- Small statements whose plans stay good when plpgsql caches them generically (the callers set
-- plan_cache_mode = force_generic_plan): the neighbour lists by index-only scans on
-- item_neighbors_ranked, returned as id arrays. The filters are taken apart into scalars once
-- per call and tested by the inlinable pgrecs.item_passes.

create or replace function pgrecs.top_signal_candidates(
    tenant text, signal text, pool integer, filters pgrecs.item_filter, categories text[] default null
)
returns bigint[]
language plpgsql
stable parallel safe
as $$
#variable_conflict use_column
declare
    f_in_stock boolean := coalesce(filters.in_stock, false);
    f_price_min numeric := filters.price_min;
    f_price_max numeric := filters.price_max;
    f_category text[] := filters.category;
    f_brand text := filters.brand;
    f_brands text[] := filters.brands;
    f_exclude_brands text[] := filters.exclude_brands;
    f_exclude bigint[] := filters.exclude;
    ids bigint[];
begin
    if pool is null or pool < 1 then
        return '{}';
    end if;
    -- One static branch per signal, so each keeps its own cached generic plan. Such a plan knows
    -- neither the pool size (LIMIT $n counts as 10% of the table) nor how selective the filters
    -- are, and would read and sort all of item_signals. So popular and trending items are first
    -- taken from the top 1000 of their ordered index (a plan that depends on no parameter),
    -- filtered after; only when that window holds fewer matching items than the pool (narrow
    -- filters, small catalogs) is the exact query planned for this call (EXECUTE).
    if signal = 'popularity' then
        ids := array(
            select y.item_id
            from (
                -- the filter is a column here (offset 0 below keeps it one), not a qual the planner
                -- would push into a scan of items: with it pushed, the generic plan estimated one
                -- matching item and read all of items (~200 ms at 100k items) instead of the window
                select x.item_id, pgrecs.item_passes(i, f_in_stock, f_price_min, f_price_max, f_category, f_brand,
                                                     f_brands, f_exclude_brands, f_exclude) as ok
                from (
                    -- the top 1000 and every item tied with the 1000th (none when fewer: exact path)
                    select s.item_id, s.popularity
                    from pgrecs.item_signals s
                    where s.tenant_id = tenant
                      and s.popularity >= (select s2.popularity from pgrecs.item_signals s2
                                           where s2.tenant_id = tenant
                                           order by s2.popularity desc
                                           offset 999 limit 1)
                ) x
                join pgrecs.items i on i.item_id = x.item_id
                order by x.popularity desc, i.tie_key
                offset 0
            ) y
            where y.ok
            limit pool);
    elsif signal = 'trending' then
        ids := array(
            select y.item_id
            from (
                select x.item_id, pgrecs.item_passes(i, f_in_stock, f_price_min, f_price_max, f_category, f_brand,
                                                     f_brands, f_exclude_brands, f_exclude) as ok
                from (
                    select s.item_id, s.trending
                    from pgrecs.item_signals s
                    where s.tenant_id = tenant
                      and s.trending > 0
                      and s.trending >= (select s2.trending from pgrecs.item_signals s2
                                         where s2.tenant_id = tenant
                                           and s2.trending > 0
                                         order by s2.trending desc
                                         offset 999 limit 1)
                ) x
                join pgrecs.items i on i.item_id = x.item_id
                order by x.trending desc, i.tie_key
                offset 0
            ) y
            where y.ok
            limit pool);
    elsif signal = 'category_popularity' then
        -- the most popular of each of the first 5 categories (category paths joined by chr(31)):
        -- its items (items_tenant_category_key: text equality is leakproof, so the index serves
        -- the API role under row-level security too, where text[] equality fell back to a scan of
        -- all items), each one's popularity by its key (offset 0 keeps that a per-item lookup, not
        -- a scan of item_signals), best first
        ids := array(
            select y.item_id
            from unnest(categories[1:5]) as ac (cp)
            cross join lateral (
                select i.item_id
                from pgrecs.items i
                cross join lateral (
                    select s.popularity
                    from pgrecs.item_signals s
                    where s.item_id = i.item_id
                    offset 0
                ) sp
                where i.tenant_id = tenant
                  and i.category_key = ac.cp
                  and pgrecs.item_passes(i, f_in_stock, f_price_min, f_price_max, f_category, f_brand,
                                         f_brands, f_exclude_brands, f_exclude)
                order by sp.popularity desc, i.tie_key
                limit pool
            ) y);
    else
        raise exception 'no top list for signal %', signal using errcode = '22023';
    end if;
    if signal in ('popularity', 'trending') and cardinality(ids) < pool then
        -- the window held too few matching items: the exact query, planned for this call with its
        -- values (the column name comes from the two branches above, never from the caller)
        execute format($q$
            select array(
                select s.item_id
                from pgrecs.item_signals s
                join pgrecs.items i on i.item_id = s.item_id
                where s.tenant_id = $1
                  and (s.%1$I > 0 or $4 = 'popularity')
                  and pgrecs.item_matches_filters(i, $2)
                order by s.%1$I desc, i.tie_key
                limit $3)
        $q$, signal) into ids using tenant, filters, pool, signal;
    end if;
    return ids;
end
$$;
comment on function pgrecs.top_signal_candidates(text, text, integer, pgrecs.item_filter, text[]) is
    'The pool best items of a signal that pass the filters, best first (ties by items.tie_key): popularity, trending (> 0), or category_popularity (the most popular of each of the first 5 of categories, paths joined by chr(31)).';

create or replace function pgrecs.rank_candidates(
    tenant text,
    anchor_ids bigint[],
    anchor_weights real[],
    anchor_positions integer[],
    exclude_ids bigint[],
    signals text[],
    pools integer[],
    kinds text[],
    filters pgrecs.item_filter,
    out neighbor_items bigint[],
    out neighbor_signals text[],
    out neighbor_scores double precision[],
    out neighbor_anchors bigint[],
    out anchor_categories text[],
    out candidates bigint[]
)
language plpgsql
stable parallel safe
as $$
#variable_conflict use_column
declare
    pop_pool integer := pools[array_position(signals, 'popularity')];
    trend_pool integer := pools[array_position(signals, 'trending')];
    catpop_pool integer := pools[array_position(signals, 'category_popularity')];
begin
    -- the neighbour lists of every anchor, one row per (anchor, signal, neighbour), weighted by
    -- the anchor. The next-item signal ('sequence') asks what follows the latest steps, so it
    -- weighs anchors by their recency position (the most recent 1; each later one half the one
    -- before; items of one timestamp share a position), not by their summed history weight: a
    -- session of ratings seconds apart has equal weights, yet only its last items say what comes next
    select coalesce(array_agg(nb.neighbor_item_id), '{}'), coalesce(array_agg(s.signal), '{}'),
           coalesce(array_agg(case when s.signal = 'sequence'
                                   then sign(a.weight) * power(0.5::float8, (coalesce(a.pos, a.ord) - 1)::float8)
                                   else a.weight end * nb.score), '{}'),
           coalesce(array_agg(a.item_id), '{}')
    into neighbor_items, neighbor_signals, neighbor_scores, neighbor_anchors
    from unnest(anchor_ids, anchor_weights, anchor_positions) with ordinality as a (item_id, weight, pos, ord)
    cross join unnest(signals, pools, kinds) as s (signal, pool, kind)
    cross join lateral (
        select nn.neighbor_item_id, nn.score
        from pgrecs.item_neighbors nn
        where nn.tenant_id = tenant
          and nn.signal = s.signal
          and nn.item_id = a.item_id
          and nn.rank <= s.pool
    ) nb
    where s.kind = 'neighbors'
      and not (nb.neighbor_item_id = any(exclude_ids));

    -- category paths of the positive anchors (joined by chr(31)), strongest anchor first; the
    -- first 5 bring popular-in-category candidates
    select coalesce(array_agg(x.cp order by x.w desc, x.cp), '{}') into anchor_categories
    from (
        select array_to_string(ai.category_path, chr(31)) as cp, max(a.weight) as w
        from unnest(anchor_ids, anchor_weights) as a (item_id, weight)
        join pgrecs.items ai on ai.item_id = a.item_id
        where a.weight > 0 and cardinality(ai.category_path) > 0
        group by 1
    ) x;

    candidates := neighbor_items;
    if pop_pool > 0 then
        candidates := candidates || pgrecs.top_signal_candidates(tenant, 'popularity', pop_pool, filters);
    end if;
    if trend_pool > 0 then
        candidates := candidates || pgrecs.top_signal_candidates(tenant, 'trending', trend_pool, filters);
    end if;
    if catpop_pool > 0 and cardinality(anchor_categories) > 0 then
        candidates := candidates || pgrecs.top_signal_candidates(tenant, 'category_popularity', catpop_pool,
                                                                 filters, anchor_categories);
    end if;
end
$$;
comment on function pgrecs.rank_candidates(text, bigint[], real[], integer[], bigint[], text[], integer[], text[], pgrecs.item_filter) is
    'Candidates of rank_items (stage 1) as id arrays: the anchors'' neighbour lists of every neighbors signal (the next-item lists weighted by anchor recency position, halving per step), the anchors'' categories, and every candidate id (neighbours, then pgrecs.top_signal_candidates of the item signals); not yet filtered, excluded or blocked.';
