-- Filtered retrieval: the strategy per filter (hnsw or an exact scan, from the statistics) and the
-- partial HNSW indexes of hot category filters (pgrecs.semantic_search searches a category's own
-- index when it has one).

create or replace function pgrecs.filter_index_name(model_id smallint, category text[])
returns text
language sql
immutable parallel safe
as $$
    select 'pgrecs.' || left('item_embeddings_hnsw_m' || model_id || '_' || md5(array_to_string(category, chr(31))), 63)
$$;
comment on function pgrecs.filter_index_name(smallint, text[]) is
    'Schema-qualified name of the partial HNSW index of a model over a category prefix (pgrecs.ensure_filter_index).';

create or replace function pgrecs.ensure_filter_index(model_id smallint, category text[])
returns text
language plpgsql
volatile
as $$
declare
    m pgrecs.embedding_models;
    index_name text;
begin
    select * into m from pgrecs.embedding_models as e where e.model_id = ensure_filter_index.model_id;
    if not found then
        raise exception 'unknown embedding model id: %', model_id using errcode = 'P0002';
    end if;
    if category is null or cardinality(category) = 0 then
        raise exception 'a filter index needs a category prefix' using errcode = '22023';
    end if;
    index_name := split_part(pgrecs.filter_index_name(m.model_id, category), '.', 2);
    -- DDL takes no parameters: the category is quoted as a literal with %L, integers come from
    -- the models table. The predicate is the one semantic_search's filtered plan folds to.
    execute format(
        'create index if not exists %I on pgrecs.item_embeddings using hnsw '
        '((embedding::halfvec(%s)) halfvec_cosine_ops) with (m = %s, ef_construction = %s) '
        'where model_id = %s and category_path[1:%s] = %L::text[]',
        index_name, m.dimensions, m.hnsw_m, m.hnsw_ef_construction, m.model_id, cardinality(category), category);
    return index_name;
end
$$;
comment on function pgrecs.ensure_filter_index(smallint, text[]) is
    'Create (if missing) a partial HNSW index of one model over the items under a category prefix (a hot '
    'filter): recs.similar_items with that category filter then searches only those items.';

-- Categories too big for an exact scan but too small a share for HNSW iterative scans to keep
-- their recall (at 1,000,000 items a 2% category: iterative scans give recall 0.90 and p99 31 ms;
-- its partial index 0.97 and 1.5 ms): each gets its own partial index, like a partition.
create or replace function pgrecs.ensure_category_filter_indexes(
    model_id smallint,
    max_share double precision default 0.1,
    levels integer default 1
)
returns text[]
language plpgsql
volatile
as $$
declare
    m pgrecs.embedding_models;
    total bigint;
    prefixes jsonb;
    prefix jsonb;
    made text[] := '{}';
begin
    select * into m from pgrecs.embedding_models as e where e.model_id = ensure_category_filter_indexes.model_id;
    if not found then
        raise exception 'unknown embedding model id: %', model_id using errcode = 'P0002';
    end if;
    select count(*) into total
    from pgrecs.item_embeddings as e where e.model_id = m.model_id and e.active;
    -- collected first: an index cannot be created while a query on the table is still open
    select coalesce(jsonb_agg(to_jsonb(c.category) order by c.category), '[]') into prefixes
    from (
        select p.category
        from pgrecs.item_embeddings as e
        cross join lateral generate_series(1, least(levels, cardinality(e.category_path))) as l(level)
        cross join lateral (select e.category_path[1:l.level] as category) as p
        where e.model_id = m.model_id and e.active
        group by p.category
        having count(*) > m.exact_scan_max_rows and count(*) <= max_share * total
    ) as c;
    for prefix in select jsonb_array_elements(prefixes) loop
        made := made || pgrecs.ensure_filter_index(
            m.model_id, array(select jsonb_array_elements_text(prefix)));
    end loop;
    return made;
end
$$;
comment on function pgrecs.ensure_category_filter_indexes(smallint, double precision, integer) is
    'Give every category prefix (down to `levels` levels) of a model''s active embeddings with more than '
    'exact_scan_max_rows items but at most max_share of them its partial HNSW index '
    '(pgrecs.ensure_filter_index); returns the index names. pgrecs embed calls it after draining the queue.';

-- Selectivity is read from the statistics directly (no EXPLAIN: no planner run per call, and the
-- helpers stay stable).
create or replace function pgrecs.similarity_filter_estimate(
    category text[],
    price_min numeric,
    price_max numeric
)
returns double precision
language plpgsql
stable parallel safe
as $$
declare
    total double precision;
    fraction double precision := 1;
    part double precision;
    elems text[];
    elem_freqs real[];
    elem text;
    null_frac real;
    mcv numeric[];
    mcv_freqs real[];
    mcv_total double precision;
    bounds numeric[];
begin
    -- an upper-bound estimate of the items (all tenants) matching the category prefix and price
    -- range, from ANALYZE statistics (no planner run, no scan); null when there are none
    select c.reltuples into total from pg_catalog.pg_class as c where c.oid = 'pgrecs.items'::regclass;
    if total is null or total < 0 then
        return null;
    end if;
    if category is not null then
        select s.most_common_elems::text::text[], s.most_common_elem_freqs into elems, elem_freqs
        from pg_catalog.pg_stats as s
        where s.schemaname = 'pgrecs' and s.tablename = 'items' and s.attname = 'category_path';
        if elems is null then
            return null;
        end if;
        foreach elem in array category loop
            -- an element not listed is rarer than the rarest listed one (the entry after the list)
            part := coalesce(elem_freqs[array_position(elems, elem)], elem_freqs[cardinality(elems) + 1]);
            fraction := least(fraction, part);
        end loop;
    end if;
    if price_min is not null or price_max is not null then
        select s.null_frac, s.most_common_vals::text::numeric[], s.most_common_freqs, s.histogram_bounds::text::numeric[]
        into null_frac, mcv, mcv_freqs, bounds
        from pg_catalog.pg_stats as s
        where s.schemaname = 'pgrecs' and s.tablename = 'items' and s.attname = 'price';
        if null_frac is null then
            return null;
        end if;
        select coalesce(sum(u.freq) filter (
                   where (price_min is null or u.val >= price_min) and (price_max is null or u.val <= price_max)), 0),
               coalesce(sum(u.freq), 0)
        into part, mcv_total
        from unnest(mcv, mcv_freqs) as u(val, freq);
        if cardinality(bounds) > 1 then
            -- histogram buckets touching the range (one extra bucket at each end: an upper bound)
            part := part + (1 - null_frac - mcv_total) * least(1.0, (2 + (
                select count(*) from unnest(bounds) as b(val)
                where (price_min is null or b.val >= price_min) and (price_max is null or b.val <= price_max)
            )) / (cardinality(bounds) - 1)::double precision);
        end if;
        fraction := least(fraction, part);
    end if;
    return ceil(fraction * total);
end
$$;
comment on function pgrecs.similarity_filter_estimate(text[], numeric, numeric) is
    'Upper-bound estimate of the items matching a category prefix and price range, read from pg_stats '
    '(null before ANALYZE); lets semantic_search pick HNSW for broad filters without counting.';

create or replace function pgrecs.similarity_filter_count(
    tenant text,
    active boolean,
    category text[],
    price_min numeric,
    price_max numeric,
    in_stock boolean,
    cap integer
)
returns bigint
language plpgsql
stable parallel safe
as $$
declare
    matching bigint;
begin
    -- over pgrecs.items (every item of the tenant, embedded or not) under the filter columns' names
    execute format('select count(*) from (select from (select i.tenant_id, i.active, i.category_path, i.price, '
                   'coalesce(i.stock, 1) > 0 as in_stock from pgrecs.items i) e where %s limit $8) s',
                   pgrecs.similarity_filter_sql(active, category, price_min, price_max, in_stock))
    into matching
    using null::halfvec, tenant, active, category, price_min, price_max, in_stock, cap + 1;
    return matching;
end
$$;
comment on function pgrecs.similarity_filter_count(text, boolean, text[], numeric, numeric, boolean, integer) is
    'How many items of a tenant match a similarity filter, counting at most cap + 1.';

create or replace function pgrecs.similarity_choose(
    tenant text,
    active boolean,
    category text[],
    price_min numeric,
    price_max numeric,
    in_stock boolean,
    cap integer
)
returns text
language plpgsql
stable parallel safe
as $$
declare
    estimate double precision;
begin
    -- 1. no narrowing filter (active items of the tenant): HNSW, nothing to estimate
    if category is null and price_min is null and price_max is null and in_stock is null
        and active is not distinct from true then
        return 'hnsw';
    end if;
    -- 2. statistics say far more than cap items match: HNSW without counting. in_stock and
    --    active are not estimated (their bound is all rows), so those filters are counted.
    --    At most cap (an upper bound; other filters only narrow it): exact without counting.
    estimate := pgrecs.similarity_filter_estimate(category, price_min, price_max);
    if estimate is not null and estimate > 4 * cap then
        return 'hnsw';
    elsif estimate is not null and estimate <= cap then
        return 'exact';
    end if;
    -- 3. otherwise (no statistics, or close to cap) count, stopping at cap + 1 (cheap: a selective filter uses the GIN/btree index)
    if pgrecs.similarity_filter_count(tenant, active, category, price_min, price_max, in_stock, cap) <= cap then
        return 'exact';
    end if;
    return 'hnsw';
end
$$;
comment on function pgrecs.similarity_choose(text, boolean, text[], numeric, numeric, boolean, integer) is
    'Strategy for a filter: hnsw when unfiltered or when pg_stats put it above 4 x cap matches, exact when '
    'pg_stats put it at most cap; otherwise (no statistics, or in between) a bounded count decides.';

create or replace function pgrecs.similarity_strategy(
    filters jsonb default '{}',
    model text default null
)
returns text
language plpgsql
stable
as $$
declare
    m pgrecs.embedding_models := pgrecs.resolve_model(model);
    f pgrecs.item_filter := pgrecs.parse_filters(filters);
    tenant text := pgrecs.current_tenant();
begin
    if f.category is not null
        and to_regclass(pgrecs.filter_index_name(m.model_id, f.category)) is not null then
        return 'hnsw';  -- a hot filter's partial index
    end if;
    return pgrecs.similarity_choose(
        tenant, true, f.category, f.price_min, f.price_max, f.in_stock, m.exact_scan_max_rows);
end
$$;
comment on function pgrecs.similarity_strategy(jsonb, text) is
    'The retrieval strategy recs.similar_items uses for a filter: hnsw (unfiltered, a category with its own partial '
    'index from pgrecs.ensure_filter_index, or pg_stats put it far above embedding_models.exact_scan_max_rows '
    'matches) or exact (a bounded count finds at most that many).';
