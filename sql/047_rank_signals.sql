-- The signals of ranking: which ones a placement scores, and how a reason names each.
--
-- Every signal-specific line of pgrecs.rank_items and recs.why_not is in this file, except the
-- item columns that the scoring stage reads (popularity, trending, margin: sql/049_rank_pool.sql):
-- pgrecs.rank_signals lists the registered signals (pgrecs.signals) of a placement with their weight, pool and kind
-- (neighbour lists or an item column), and pgrecs.signal_reason words a signal's reason.

create or replace function pgrecs.rank_signals(placement_name text, weights jsonb, pool_sizes jsonb)
returns table (signals text[], signal_weights double precision[], pools integer[], kinds text[],
               reason_formats text[])
language plpgsql
stable parallel safe
as $$
-- the registered signals (pgrecs.signals) of weight <> 0, by name, each one's candidate pool
-- (pool_sizes, 50 by default) and kind: 'neighbors' (lists per anchor in pgrecs.item_neighbors)
-- or 'item' (a column of pgrecs.item_signals or pgrecs.items). A weight for a signal the registry
-- does not hold is refused: a misspelt name would otherwise weigh nothing.
declare
    unknown text;
begin
    select string_agg(x.key, ', ' order by x.key) into unknown
    from jsonb_object_keys(coalesce(weights, '{}')) as x (key)
    where not exists (select 1 from pgrecs.signals as s where s.signal = x.key);
    if unknown is not null then
        raise exception 'placement %: weights name unregistered signals: % (pgrecs.signals lists the signals)',
            placement_name, unknown using errcode = '22023';
    end if;
    return query
    select coalesce(array_agg(s.signal order by s.signal), '{}'),
           coalesce(array_agg((weights ->> s.signal)::double precision order by s.signal), '{}'),
           coalesce(array_agg(coalesce((pool_sizes ->> s.signal)::integer, 50) order by s.signal), '{}'),
           coalesce(array_agg(s.kind order by s.signal), '{}'),
           coalesce(array_agg(s.reason_format order by s.signal), '{}')
    from pgrecs.signals as s
    where coalesce((weights ->> s.signal)::double precision, 0) <> 0;
end
$$;
comment on function pgrecs.rank_signals(text, jsonb, jsonb) is
    'The registered signals (pgrecs.signals) a placement scores (weight <> 0) as parallel arrays: name, weight, candidate pool (pool_sizes, default 50) kind (neighbors: lists per anchor; item: a column of the item) and reason format; refuses (22023) weights for unregistered signals.';

create or replace function pgrecs.signal_reason(
    signal text, reason_format text, anchor_kind text, anchor_name text, anchor_brand text, anchor_category_path text[],
    brand text, category_path text[], popularity_percentile real, category_popularity_rank integer
)
returns text
language sql
-- stable as format() and array_to_string() are: so the planner inlines it into the query that
-- builds the reasons (an immutable body calling stable functions would be called row by row)
stable parallel safe
as $$
    -- anchor_kind: 'page' (the item of the page, named "this item"), 'history' (the user's) or
    -- 'example' (items the caller passed); null reason: the signal says nothing worth showing
    select case signal
        when 'semantic' then
            case when anchor_kind <> 'page' then format('similar to %s', anchor_name)
                 when anchor_brand = brand then format('similar description, same brand (%s)', brand)
                 when anchor_category_path = category_path and cardinality(category_path) > 0
                     then format('similar description, same category (%s)', array_to_string(category_path, ' > '))
                 else 'similar description'
            end
        when 'ease' then
            case anchor_kind
                when 'history' then 'customers like you also chose this'
                when 'page' then 'customers who chose this item also chose this one'
                else format(reason_format, anchor_name)
            end
        when 'popularity' then
            case when popularity_percentile < 0.05
                 then reason_format end
        when 'category_popularity' then
            case when category_popularity_rank <= 10
                 then format(reason_format, array_to_string(category_path, ' > ')) end
        -- every other signal in the registry's wording (%s: the anchor's name)
        else format(reason_format, anchor_name)
    end
$$;
comment on function pgrecs.signal_reason(text, text, text, text, text, text[], text, text[], real, integer) is
    'The reason a signal gives for an item, or null: the registry''s reason_format (pgrecs.signals) worded from the anchor (its kind page/history/example, name, brand, category path) and the item (brand, category path, popularity percentile, rank in its category).';
