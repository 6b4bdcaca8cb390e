-- Semantic layer: embedding queue triggers, HNSW index management, semantic neighbour lists,
-- and the public retrieval functions recs.similar_items / recs.search_by_vector.
--
-- Idempotent (create or replace), re-applied on every `pgrecs migrate`. Tables and the default
-- model's index live in migrations/versions/0002_semantic.py.
--
-- Tenant: every function reads current_setting('pgrecs.tenant', true); null or '' means 'default'.

-------------------------------------------------------------------------------------------------
-- Small helpers
-------------------------------------------------------------------------------------------------

create or replace function pgrecs.item_text_sha256(composed text)
returns bytea
language sql
immutable parallel safe
as $$
    select sha256(convert_to(coalesce(composed, ''), 'UTF8'))
$$;
comment on function pgrecs.item_text_sha256(text) is
    'sha256 of a composed item text (UTF-8); stored with each embedding so unchanged text is never re-embedded.';

create or replace function pgrecs.resolve_model(model text default null)
returns pgrecs.embedding_models
language plpgsql
stable
as $$
declare
    m pgrecs.embedding_models;
begin
    if model is null then
        select * into m from pgrecs.embedding_models where is_default;
        if not found then
            raise exception 'no default embedding model is registered' using errcode = 'P0002';
        end if;
    else
        select * into m from pgrecs.embedding_models where name = model;
        if not found then
            raise exception 'unknown embedding model: %', model using errcode = 'P0002';
        end if;
    end if;
    return m;
end
$$;
comment on function pgrecs.resolve_model(text) is
    'The embedding_models row for a model name (the default model when null); raises P0002 when unknown.';

create or replace function pgrecs.ensure_model_index(model_id smallint)
returns text
language plpgsql
volatile
as $$
declare
    m pgrecs.embedding_models;
    index_name text;
begin
    select * into m from pgrecs.embedding_models e where e.model_id = ensure_model_index.model_id;
    if not found then
        raise exception 'unknown embedding model id: %', model_id using errcode = 'P0002';
    end if;
    index_name := 'item_embeddings_hnsw_m' || m.model_id;
    -- integers from the models table only; identifiers quoted with %I
    execute format(
        'create index if not exists %I on pgrecs.item_embeddings using hnsw '
        '((embedding::halfvec(%s)) halfvec_cosine_ops) with (m = %s, ef_construction = %s) '
        'where model_id = %s',
        index_name, m.dimensions, m.hnsw_m, m.hnsw_ef_construction, m.model_id);
    -- its static unfiltered branch in pgrecs.semantic_search (once that exists: sql/ order)
    if to_regprocedure('pgrecs.generate_semantic_search()') is not null then
        perform pgrecs.generate_semantic_search();
    end if;
    return index_name;
end
$$;
comment on function pgrecs.ensure_model_index(smallint) is
    'Create (if missing) the HNSW cosine expression index of one model: (embedding::halfvec(dims)) where model_id = id; '
    'then regenerate pgrecs.semantic_search so the model has its static unfiltered branch.';

-------------------------------------------------------------------------------------------------
-- Semantic neighbour lists of every model, as one relation: the default model's are
-- pgrecs.item_neighbors rows with signal 'semantic' (what scoring reads), the other maintained
-- models' pgrecs.semantic_neighbors (migration 0025). A promotion swaps them in one transaction.
-------------------------------------------------------------------------------------------------

create or replace view pgrecs.semantic_lists as
select nb.tenant_id, m.model_id, nb.item_id, nb.neighbor_item_id, nb.score, nb.rank, nb.computed_at
from pgrecs.item_neighbors as nb
join pgrecs.embedding_models as m on m.is_default
where nb.signal = 'semantic'
union all
select sn.tenant_id, sn.model_id, sn.item_id, sn.neighbor_item_id, sn.score, sn.rank, sn.computed_at
from pgrecs.semantic_neighbors as sn
join pgrecs.embedding_models as m on m.model_id = sn.model_id and not m.is_default;
comment on view pgrecs.semantic_lists is
    'Semantic neighbour lists of every model: the default model''s (pgrecs.item_neighbors, signal semantic) and '
    'the other maintained models'' (pgrecs.semantic_neighbors).';

-------------------------------------------------------------------------------------------------
-- Freshness: triggers on pgrecs.items queue (item, model) pairs and NOTIFY pgrecs_embed
-------------------------------------------------------------------------------------------------

create or replace function pgrecs.items_queue_inserted()
returns trigger
language plpgsql
volatile
as $$
begin
    insert into pgrecs.embedding_queue (tenant_id, item_id, model_id)
    select n.tenant_id, n.item_id, m.model_id
    from new_rows as n
    cross join pgrecs.embedding_models as m
    where n.active and m.state <> 'retired'
    on conflict on constraint embedding_queue_pkey do nothing;
    if found then
        perform pg_notify('pgrecs_embed', '');
    end if;
    return null;
end
$$;
comment on function pgrecs.items_queue_inserted() is
    'Trigger: queue new active items for every maintained (not retired) model and notify the embed watcher.';

create or replace function pgrecs.items_queue_updated()
returns trigger
language plpgsql
volatile
as $$
begin
    insert into pgrecs.embedding_queue (tenant_id, item_id, model_id)
    select n.tenant_id, n.item_id, m.model_id
    from new_rows as n
    join old_rows as o on o.item_id = n.item_id
    cross join pgrecs.embedding_models as m
    where m.state <> 'retired'
      and (n.active is distinct from o.active
        or n.embed_override is distinct from o.embed_override
        or (
            (n.title, n.description, n.brand, n.category_path, n.attributes)
                is distinct from (o.title, o.description, o.brand, o.category_path, o.attributes)
            and pgrecs.compose_item_text(n.title, n.description, n.brand, n.category_path, n.attributes)
                is distinct from pgrecs.compose_item_text(o.title, o.description, o.brand, o.category_path, o.attributes)
        ))
    on conflict on constraint embedding_queue_pkey do nothing;
    if found then
        perform pg_notify('pgrecs_embed', '');
    end if;
    return null;
end
$$;
comment on function pgrecs.items_queue_updated() is
    'Trigger: queue updated items whose composed embedding text, active flag or embedding override changed '
    '(every maintained model), and notify the embed watcher.';

create or replace function pgrecs.items_queue_neighbor_refill()
returns trigger
language plpgsql
volatile
as $$
begin
    -- The FK cascade removes the deleted item from every neighbour list; queue the items that
    -- listed it (for the model of that list) so the worker refills their lists to N.
    insert into pgrecs.embedding_queue (tenant_id, item_id, model_id)
    select n.tenant_id, n.item_id, n.model_id
    from pgrecs.semantic_lists as n
    join pgrecs.embedding_models as m on m.model_id = n.model_id
    where n.neighbor_item_id = old.item_id
        and n.item_id <> old.item_id
        and m.state <> 'retired'
    on conflict on constraint embedding_queue_pkey do nothing;
    return old;
end
$$;
comment on function pgrecs.items_queue_neighbor_refill() is
    'Trigger: before an item is deleted, queue the items whose semantic neighbour list (any maintained model) contains it.';

create or replace trigger items_queue_embeddings_insert
    after insert on pgrecs.items
    referencing new table as new_rows
    for each statement execute function pgrecs.items_queue_inserted();

create or replace trigger items_queue_embeddings_update
    after update on pgrecs.items
    referencing old table as old_rows new table as new_rows
    for each statement execute function pgrecs.items_queue_updated();

create or replace trigger items_queue_neighbor_refill
    before delete on pgrecs.items
    for each row execute function pgrecs.items_queue_neighbor_refill();

-- The similarity filter columns of pgrecs.item_embeddings (active, category_path, price, in_stock;
-- migration 0007) copy pgrecs.items: filled when an embedding row is written, kept in step when
-- an item changes. Filters then read the embedding row alone (no join on the hot path).
create or replace function pgrecs.item_embeddings_copy_filters()
returns trigger
language plpgsql
volatile
as $$
begin
    select i.active, i.category_path, i.price, coalesce(i.stock, 1) > 0, i.tie_key
    into new.active, new.category_path, new.price, new.in_stock, new.tie_key
    from pgrecs.items as i
    where i.item_id = new.item_id;
    return new;
end
$$;
comment on function pgrecs.item_embeddings_copy_filters() is
    'Trigger: copy the item''s filter columns (active, category_path, price, in_stock) and tie key onto a new '
    'embedding row.';

create or replace trigger item_embeddings_copy_filters
    before insert on pgrecs.item_embeddings
    for each row execute function pgrecs.item_embeddings_copy_filters();

create or replace function pgrecs.items_sync_embedding_filters()
returns trigger
language plpgsql
volatile
as $$
begin
    update pgrecs.item_embeddings as e
    set active = n.active, category_path = n.category_path, price = n.price, in_stock = coalesce(n.stock, 1) > 0,
        tie_key = n.tie_key
    from new_rows as n
    where e.item_id = n.item_id
        and (e.active, e.category_path, e.price, e.in_stock, e.tie_key)
            is distinct from (n.active, n.category_path, n.price, coalesce(n.stock, 1) > 0, n.tie_key);
    return null;
end
$$;
comment on function pgrecs.items_sync_embedding_filters() is
    'Trigger: after items change, update the filter columns and tie key copied onto their embeddings (only rows '
    'that differ).';

create or replace trigger items_sync_embedding_filters
    after update on pgrecs.items
    referencing new table as new_rows
    for each statement execute function pgrecs.items_sync_embedding_filters();

create or replace function pgrecs.enqueue_stale_embeddings(model_id smallint)
returns integer
language plpgsql
volatile
as $$
declare
    queued integer;
    tenant text := coalesce(nullif(current_setting('pgrecs.tenant', true), ''), 'default');
begin
    -- active items of this tenant whose current composed text has neither an embedding nor a
    -- not-embeddable verdict with the same hash
    insert into pgrecs.embedding_queue (tenant_id, item_id, model_id)
    select i.tenant_id, i.item_id, enqueue_stale_embeddings.model_id
    from pgrecs.items as i
    cross join lateral (
        select pgrecs.item_text_sha256(
            pgrecs.compose_item_text(i.title, i.description, i.brand, i.category_path, i.attributes)) as sha
    ) as t
    where i.tenant_id = tenant
        and i.active
        and not exists (
            select from pgrecs.item_embeddings as e
            where e.item_id = i.item_id and e.model_id = enqueue_stale_embeddings.model_id and e.text_sha256 = t.sha)
        and not exists (
            select from pgrecs.not_embeddable as x
            where x.item_id = i.item_id and x.model_id = enqueue_stale_embeddings.model_id and x.text_sha256 = t.sha)
    on conflict on constraint embedding_queue_pkey do nothing;
    get diagnostics queued = row_count;
    return queued;
end
$$;
comment on function pgrecs.enqueue_stale_embeddings(smallint) is
    'Queue every active item of the current tenant without an up-to-date embedding (or verdict) for the model; returns how many.';

-------------------------------------------------------------------------------------------------
-- Retrieval core
-------------------------------------------------------------------------------------------------

create or replace function pgrecs.check_similarity_filters(filters jsonb)
returns jsonb
language plpgsql
immutable parallel safe
as $$
declare
    key text;
begin
    if filters is null then
        return '{}'::jsonb;
    end if;
    if jsonb_typeof(filters) <> 'object' then
        raise exception 'filters must be a JSON object' using errcode = '22023';
    end if;
    for key in select jsonb_object_keys(filters) loop
        if key not in ('category', 'price_min', 'price_max', 'in_stock', 'active') then
            raise exception 'unknown filter: % (allowed: category, price_min, price_max, in_stock, active)', key
                using errcode = '22023';
        end if;
    end loop;
    if filters ? 'category' and jsonb_typeof(filters -> 'category') not in ('string', 'array') then
        raise exception 'filter category must be a string ("A > B") or an array of strings' using errcode = '22023';
    end if;
    if (filters ? 'price_min' and jsonb_typeof(filters -> 'price_min') <> 'number')
        or (filters ? 'price_max' and jsonb_typeof(filters -> 'price_max') <> 'number') then
        raise exception 'filters price_min and price_max must be numbers' using errcode = '22023';
    end if;
    if (filters ? 'in_stock' and jsonb_typeof(filters -> 'in_stock') not in ('boolean', 'null'))
        or (filters ? 'active' and jsonb_typeof(filters -> 'active') not in ('boolean', 'null')) then
        raise exception 'filters in_stock and active must be booleans' using errcode = '22023';
    end if;
    return filters;
end
$$;
comment on function pgrecs.check_similarity_filters(jsonb) is
    'Validate a similarity filter object (category, price_min, price_max, in_stock, active); raises 22023 on a bad one.';

create or replace function pgrecs.filter_category(filters jsonb)
returns text[]
language sql
immutable parallel safe
as $$
    select case jsonb_typeof(filters -> 'category')
        when 'string' then
            (select array_agg(btrim(part) order by ord)
             from unnest(string_to_array(filters ->> 'category', '>')) with ordinality as p(part, ord))
        when 'array' then
            (select array_agg(value order by ord)
             from jsonb_array_elements_text(filters -> 'category') with ordinality as p(value, ord))
    end
$$;
comment on function pgrecs.filter_category(jsonb) is
    'The category prefix of a filter object as a text array ("Books > Fiction" or ["Books", "Fiction"]); null when absent.';

-- The filter predicate shared by the strategies and the count, over pgrecs.item_embeddings e (whose
-- filter columns copy pgrecs.items: migration 0007); $2..$7 are tenant, active, category prefix,
-- price_min, price_max, in_stock. Only the clauses of filters present are written, so the planner
-- sees plain indexable conditions (no "$n is null or ..." branches), and a one-shot plan folds the
-- values in, so a partial HNSW index of a hot category (pgrecs.ensure_filter_index) can match.
drop function if exists pgrecs.similarity_filter_sql();

create or replace function pgrecs.similarity_filter_sql(
    active boolean,
    category text[],
    price_min numeric,
    price_max numeric,
    in_stock boolean
)
returns text
language sql
immutable parallel safe
as $$
    select concat_ws(' and ',
        'e.tenant_id = $2',
        case when active is not null then 'e.active = $3' end,
        case when category is not null
            then 'e.category_path @> $4 and e.category_path[1:cardinality($4)] = $4' end,
        case when price_min is not null then 'e.price >= $5' end,
        case when price_max is not null then 'e.price <= $6' end,
        case when in_stock is not null then 'e.in_stock = $7' end)
$$;
comment on function pgrecs.similarity_filter_sql(boolean, text[], numeric, numeric, boolean) is
    'SQL text of the similarity filter predicate over pgrecs.item_embeddings e (or a relation with the same '
    'filter columns) for the filters given (non-null), parameters $2..$7; internal to semantic_search.';

-- Earlier versions estimated selectivity with EXPLAIN, which forced the helper to be volatile and
-- cost a planner run per call; the statistics are read directly now.
drop function if exists pgrecs.similarity_filter_matches(text, boolean, text[], numeric, numeric, boolean, integer);

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
    f jsonb := pgrecs.check_similarity_filters(filters);
    tenant text := coalesce(nullif(current_setting('pgrecs.tenant', true), ''), 'default');
begin
    if pgrecs.filter_category(f) is not null
        and to_regclass(pgrecs.filter_index_name(m.model_id, pgrecs.filter_category(f))) is not null then
        return 'hnsw';  -- a hot filter's partial index
    end if;
    return pgrecs.similarity_choose(
        tenant, coalesce((f ->> 'active')::boolean, true), pgrecs.filter_category(f),
        (f ->> 'price_min')::numeric, (f ->> 'price_max')::numeric, (f ->> 'in_stock')::boolean,
        m.exact_scan_max_rows);
end
$$;
comment on function pgrecs.similarity_strategy(jsonb, text) is
    'The retrieval strategy recs.similar_items uses for a filter: hnsw (unfiltered, a category with its own partial '
    'index from pgrecs.ensure_filter_index, or pg_stats put it far above embedding_models.exact_scan_max_rows '
    'matches) or exact (a bounded count finds at most that many).';

-- pgrecs.semantic_search is generated: its unfiltered path (the hot one) is one static statement
-- per model, written with the model's dimensions and id as literals so that the planner matches
-- the model's partial expression index, and planned once per session (plan_cache_mode
-- force_generic_plan: no re-planning per call). Filtered paths stay dynamic (EXECUTE ... USING is
-- a one-shot plan with the filter values folded in: the right index per filter, partial HNSW
-- indexes of hot filters included). pgrecs.generate_semantic_search() re-creates it from the
-- template below with one branch per registered model; ensure_model_index and this file call it.
create or replace function pgrecs.semantic_search_template()
returns text
language sql
immutable parallel safe
as $template$
    select $body$
create or replace function pgrecs.semantic_search(
    query halfvec,
    k integer,
    filters jsonb,
    model_id smallint,
    exclude_item_id bigint default null
)
returns table (item_id bigint, external_id text, score real, rank integer)
language plpgsql
stable
-- restored on exit, so set_config below never leaks into the caller's transaction
set hnsw.iterative_scan = 'relaxed_order'
set hnsw.ef_search = 100
-- the HNSW-ordered scan is the only good plan for "order by distance limit k" (the exact path
-- writes "+ 0", which no index can order, so it still sorts); static statements are planned once
set enable_sort = off
set enable_bitmapscan = on
set plan_cache_mode = force_generic_plan
as $fn$
#variable_conflict use_column
declare
    tenant text := coalesce(nullif(current_setting('pgrecs.tenant', true), ''), 'default');
    m_dimensions integer;
    m_ef_search integer;
    m_exact_max integer;
    f jsonb;
    v_active boolean;
    v_category text[];
    v_price_min numeric;
    v_price_max numeric;
    v_in_stock boolean;
    predicate text;
    distance text;
    ids bigint[];
    scores real[];
begin
    if k is null or k < 1 or k > 1000 then
        raise exception 'k must be between 1 and 1000 (got %)', k using errcode = '22023';
    end if;
    select e.dimensions, e.hnsw_ef_search, e.exact_scan_max_rows
    into m_dimensions, m_ef_search, m_exact_max
    from pgrecs.embedding_models as e
    where e.model_id = semantic_search.model_id;
    if not found or query is null then
        return;
    end if;
    -- Index scans take 16 rows beyond k and cut at k by (distance, tie_key): items at equal distance
    -- (duplicate texts) are then ordered by the hash of their external id, not by the index's visit
    -- order. The exact path orders by (distance, tie_key) directly.
    if m_ef_search <> 100 or k + 16 >= 100 then
        perform set_config('hnsw.ef_search', greatest(m_ef_search, k + 16)::text, true);
    end if;

    if filters is null or filters = '{}'::jsonb then
        -- unfiltered (active items of the tenant): one static statement per model
        if false then
            null;
/*MODEL BRANCHES*/
        end if;
        -- a model registered without generate_semantic_search(): the dynamic path below
        filters := '{}'::jsonb;
    end if;

    f := pgrecs.check_similarity_filters(filters);
    v_active := coalesce((f ->> 'active')::boolean, true);
    v_category := pgrecs.filter_category(f);
    v_price_min := (f ->> 'price_min')::numeric;
    v_price_max := (f ->> 'price_max')::numeric;
    v_in_stock := (f ->> 'in_stock')::boolean;
    -- the dimensions and model id are integers from the models table, written as literals so the
    -- planner matches the partial expression index of this model
    distance := format('(e.embedding::halfvec(%s) <=> $1::halfvec(%s))', m_dimensions, m_dimensions);
    predicate := pgrecs.similarity_filter_sql(v_active, v_category, v_price_min, v_price_max, v_in_stock);

    -- a hot filter (a partial HNSW index over this category: pgrecs.ensure_filter_index) searches
    -- its own small index, whatever the selectivity; otherwise the strategy follows selectivity
    if (v_category is not null and to_regclass(pgrecs.filter_index_name(semantic_search.model_id, v_category)) is not null)
        or pgrecs.similarity_choose(tenant, v_active, v_category, v_price_min, v_price_max, v_in_stock, m_exact_max)
        = 'hnsw' then
        -- broad: the HNSW index (a hot filter's partial index when one matches), relaxed-order
        -- iterative scans checking the filter on the embedding row itself (no join); then the top k.
        -- A filter keeps only part of each candidate list: at least the default ef_search of 100
        -- (a model tuned lower for unfiltered search lost recall here: 0.9495 at 40, 20% filter)
        perform set_config('hnsw.ef_search', greatest(m_ef_search, 100, k + 16)::text, true);
        perform set_config('enable_bitmapscan', 'off', true);
        execute format(
            'select array_agg(t.item_id order by t.dist, t.tie_key),
                    array_agg((1 - t.dist)::real order by t.dist, t.tie_key)
             from (
                 select s.item_id, s.dist, s.tie_key
                 from (
                     select e.item_id, e.tie_key, %1$s as dist
                     from pgrecs.item_embeddings e
                     where e.model_id = %2$s and %3$s
                         and e.item_id is distinct from $8
                     order by %1$s
                     limit $9 + 16
                 ) s
                 order by s.dist, s.tie_key
                 limit $9
             ) t',
            distance, semantic_search.model_id, predicate)
        into ids, scores
        using query, tenant, v_active, v_category, v_price_min, v_price_max, v_in_stock, exclude_item_id, k;
        perform set_config('enable_bitmapscan', 'on', true);
        if coalesce(cardinality(ids), 0) >= k then
            return query
                select u.item_id, i.external_id, u.score,
                       (row_number() over (order by u.score desc, i.tie_key))::integer
                from unnest(ids, scores) with ordinality as u(item_id, score, ord)
                join pgrecs.items as i on i.item_id = u.item_id
                order by u.score desc, i.tie_key;
            return;
        end if;
        -- the iterative scan stopped before k matches (hnsw.max_scan_tuples, or fewer embedded
        -- matches exist): fall through to the exact answer
    end if;

    -- selective (or the index gave up): exact scan over the GIN/btree-selected subset of the
    -- model's embeddings. "+ 0" keeps the planner off the HNSW index.
    return query execute format(
        'select s.item_id, i.external_id, (1 - s.dist)::real, (row_number() over (order by s.dist, i.tie_key))::integer
         from (
             select e.item_id, %1$s + 0 as dist
             from pgrecs.item_embeddings e
             where e.model_id = %2$s and %3$s and e.item_id is distinct from $8
             order by %1$s + 0, e.tie_key
             limit $9
         ) s
         join pgrecs.items i on i.item_id = s.item_id
         order by s.dist, i.tie_key',
        distance, semantic_search.model_id, predicate)
    using query, tenant, v_active, v_category, v_price_min, v_price_max, v_in_stock, exclude_item_id, k;
end
$fn$;
$body$
$template$;
comment on function pgrecs.semantic_search_template() is
    'Source of pgrecs.semantic_search with a /*MODEL BRANCHES*/ placeholder; see pgrecs.generate_semantic_search().';

create or replace function pgrecs.generate_semantic_search()
returns integer
language plpgsql
volatile
as $$
declare
    m record;
    branches text := '';
    models integer := 0;
begin
    for m in select e.model_id, e.dimensions from pgrecs.embedding_models as e order by e.model_id loop
        -- integers from the models table only
        branches := branches || format($branch$
        elsif model_id = %1$s then
            return query
                select s.item_id, i.external_id, (1 - s.dist)::real,
                    (row_number() over (order by s.dist, i.tie_key))::integer
                from (
                    select e.item_id, e.embedding::halfvec(%2$s) <=> query::halfvec(%2$s) as dist
                    from pgrecs.item_embeddings as e
                    where e.model_id = %1$s and e.tenant_id = tenant and e.active
                        and e.item_id is distinct from exclude_item_id
                    order by e.embedding::halfvec(%2$s) <=> query::halfvec(%2$s)
                    limit k + 16
                ) as s
                join pgrecs.items as i on i.item_id = s.item_id
                order by s.dist, i.tie_key
                limit k;
            return;$branch$, m.model_id, m.dimensions);
        models := models + 1;
    end loop;
    execute replace(pgrecs.semantic_search_template(), '/*MODEL BRANCHES*/', branches);
    execute $c$comment on function pgrecs.semantic_search(halfvec, integer, jsonb, smallint, bigint) is
        'Top-k items of the current tenant nearest to a vector for one model, filtered. Unfiltered: the model''s '
        'HNSW index through a static statement planned once (generated per model by '
        'pgrecs.generate_semantic_search). Filtered: strategy from pgrecs.similarity_choose, exact scan over the '
        'GIN/btree-selected embeddings when the filter matches few items, HNSW (relaxed-order iterative scans; a hot '
        'filter''s partial index when one exists) otherwise, falling back to exact when the index returns < k. '
        'Stable: the settings it changes are restored on exit by its SET clauses.'$c$;
    return models;
end
$$;
comment on function pgrecs.generate_semantic_search() is
    'Re-create pgrecs.semantic_search with one static unfiltered branch per registered model; returns how many.';

select pgrecs.generate_semantic_search();

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

-------------------------------------------------------------------------------------------------
-- Public API
-------------------------------------------------------------------------------------------------

create or replace function recs.search_by_vector(
    query_embedding halfvec,
    k integer default 10,
    filters jsonb default '{}',
    model text default null
)
returns table (item_id bigint, external_id text, score real, rank integer)
language sql
stable
as $$
    select s.item_id, s.external_id, s.score, s.rank
    from pgrecs.semantic_search(
        query_embedding, k, filters, (pgrecs.resolve_model(model)).model_id, null) as s
$$;
comment on function recs.search_by_vector(halfvec, integer, jsonb, text) is
    'The k active items nearest (cosine) to a query embedding for a model (default model when null). '
    'filters: {"category": "A > B" (prefix of category_path), "price_min": n, "price_max": n, '
    '"in_stock": bool (stock null counts as in stock), "active": bool (default true)}. '
    'Returns item_id, external_id, score (cosine similarity) and rank (1 = nearest). '
    'Example: select * from recs.search_by_vector(query_embedding => $1, k => 10, filters => ''{"price_max": 20}'').';

-- plpgsql cannot name a parameter like an output column, so the public function (whose item_id
-- parameter is the API) hands its arguments to this one
create or replace function pgrecs.similar_to_item(
    item bigint,
    k integer,
    filters jsonb,
    model text
)
returns table (item_id bigint, external_id text, score real, rank integer)
language plpgsql
stable
as $$
declare
    tenant text := coalesce(nullif(current_setting('pgrecs.tenant', true), ''), 'default');
    m pgrecs.embedding_models;
    ids bigint[];
    externals text[];
    scores real[];
begin
    -- an id the tenant does not have is the caller's mistake, as in recs.recommend_for_item
    if not exists (select 1 from pgrecs.items i where i.item_id = item and i.tenant_id = tenant) then
        raise exception 'unknown item: %', item using errcode = 'P0002';
    end if;
    m := pgrecs.resolve_model(model);
    -- unfiltered, for a model whose lists the embed workers maintain: the item's semantic list is
    -- the index's top-n, kept fresh as the catalog changes, so read it instead of scanning. Its
    -- active entries in score order; fewer than k (a larger k than the list length, neighbours
    -- deactivated since) fall through to the index
    if (filters is null or filters = '{}'::jsonb) and k >= 1 and m.state <> 'retired' then
        select array_agg(l.neighbor_item_id order by l.score desc, i.tie_key),
               array_agg(i.external_id order by l.score desc, i.tie_key),
               array_agg(l.score order by l.score desc, i.tie_key)
        into ids, externals, scores
        from (
            select nb.neighbor_item_id, nb.score
            from pgrecs.item_neighbors as nb
            where m.is_default and nb.tenant_id = tenant and nb.signal = 'semantic' and nb.item_id = item
            union all
            select sn.neighbor_item_id, sn.score
            from pgrecs.semantic_neighbors as sn
            where not m.is_default and sn.tenant_id = tenant and sn.model_id = m.model_id and sn.item_id = item
        ) as l
        join pgrecs.items as i on i.item_id = l.neighbor_item_id and i.tenant_id = tenant and i.active;
        if coalesce(cardinality(ids), 0) >= k then
            return query
                select u.item_id, u.external_id, u.score, u.rank::integer
                from unnest(ids[1:k], externals[1:k], scores[1:k]) with ordinality as u(item_id, external_id, score, rank);
            return;
        end if;
    end if;
    return query
    select s.item_id, s.external_id, s.score, s.rank
    from pgrecs.item_embeddings as e
    cross join lateral pgrecs.semantic_search(e.embedding, k, filters, e.model_id, e.item_id) as s
    where e.item_id = item
        and e.model_id = m.model_id
        and e.tenant_id = tenant;
end
$$;
comment on function pgrecs.similar_to_item(bigint, integer, jsonb, text) is
    'The body of recs.similar_items: raises P0002 for an item the tenant does not have; unfiltered with k within '
    'the item''s maintained semantic list (pgrecs.refresh_semantic_neighbors), that list''s active entries; '
    'else the semantic search from the item''s embedding.';

-- The hot path (unfiltered, the default model, k within the maintained list) is plain SQL that the
-- planner inlines into the caller's statement: an index-only read of the item's list
-- (item_neighbors_ranked), joined to its active neighbours, the top k by score (ties by tie_key, as
-- the lists are ranked). Anything else (filters, a named
-- model, a list shorter than k, an unknown item) goes to pgrecs.similar_to_item, which decides.
create or replace function recs.similar_items(
    item_id bigint,
    k integer default 10,
    filters jsonb default '{}',
    model text default null
)
returns table (item_id bigint, external_id text, score real, rank integer)
language sql
stable
as $$
    with listed as (
        select nb.neighbor_item_id, i.external_id, nb.score, i.tie_key
        from pgrecs.item_neighbors as nb
        -- one primary-key probe per entry (at most the list length), whatever the estimates
        cross join lateral (
            select i.external_id, i.tie_key, i.tenant_id, i.active
            from pgrecs.items as i
            where i.item_id = nb.neighbor_item_id
            limit 1
        ) as i
        where i.tenant_id = nb.tenant_id and i.active
            and (similar_items.filters is null or similar_items.filters = '{}'::jsonb)
            and similar_items.model is null
            and nb.tenant_id = coalesce(nullif(current_setting('pgrecs.tenant', true), ''), 'default')
            and nb.signal = 'semantic'
            and nb.item_id = similar_items.item_id
        order by nb.score desc, i.tie_key
        limit greatest(similar_items.k, 0)
    ), served as (
        select (similar_items.k >= 1 and (select count(*) from listed) >= similar_items.k) is true as from_list
    )
    select l.neighbor_item_id, l.external_id, l.score, (row_number() over (order by l.score desc, l.tie_key))::integer
    from listed as l
    where (select s.from_list from served as s)
    union all
    select s.item_id, s.external_id, s.score, s.rank
    from pgrecs.similar_to_item(similar_items.item_id, similar_items.k, similar_items.filters,
                                similar_items.model) as s
    where not (select s.from_list from served as s)
    order by 4
$$;
comment on function recs.similar_items(bigint, integer, jsonb, text) is
    'The k items most similar to an item by embedding (cosine), excluding the item itself: unfiltered with k up to '
    'the maintained list length (50 by default), read from the item''s semantic neighbour list; otherwise an HNSW '
    'search. An item unknown to the '
    'tenant raises P0002 (no_data_found) "unknown item: <id>", as recs.recommend_for_item does; a known item without '
    'an embedding for the model (not embedded yet, or its text refused) gives an empty list. Filters as in recs.search_by_vector. '
    'Example: select * from recs.similar_items(item_id => 42, k => 10, filters => ''{"category": "Books", "in_stock": true}'').';

-------------------------------------------------------------------------------------------------
-- Semantic neighbour lists for hybrid scoring (pgrecs.semantic_lists: where each model's live)
-------------------------------------------------------------------------------------------------

create or replace function pgrecs.semantic_list_target(model_id smallint default null)
returns table (list_model_id smallint, relation text, key_column text, key_value text)
language plpgsql
volatile
as $$
begin
    -- a promotion swaps the default model's lists and the candidate's under the exclusive lock:
    -- list writers take it shared, so they wait for a promotion in flight and then write where
    -- the model's lists live after it
    perform pg_advisory_xact_lock_shared(hashtext('pgrecs.model_cutover'));
    -- the default model's lists are item_neighbors rows with signal 'semantic', the others'
    -- semantic_neighbors rows with their model_id
    return query
        select m.model_id,
            case when m.is_default then 'pgrecs.item_neighbors' else 'pgrecs.semantic_neighbors' end,
            case when m.is_default then 'signal' else 'model_id' end,
            case when m.is_default then 'semantic' else m.model_id::text end
        from pgrecs.embedding_models as m
        where m.model_id = coalesce(semantic_list_target.model_id, (pgrecs.resolve_model(null)).model_id);
    if not found then
        raise exception 'unknown embedding model id: %', semantic_list_target.model_id using errcode = 'P0002';
    end if;
end
$$;
comment on function pgrecs.semantic_list_target(smallint) is
    'Where a model''s semantic neighbour lists are written (the default model: pgrecs.item_neighbors, signal '
    'semantic; any other: pgrecs.semantic_neighbors), taking the cut-over lock shared for the transaction; '
    'internal to refresh/remove_semantic_neighbors.';

create or replace function pgrecs.refresh_semantic_neighbors(
    item_ids bigint[],
    n integer default 50,
    propagate boolean default true,
    model_id smallint default null
)
returns integer
language plpgsql
volatile
as $$
declare
    target record;
    tenant text := coalesce(nullif(current_setting('pgrecs.tenant', true), ''), 'default');
    touched bigint[];
    rescored bigint[];
    written integer;
begin
    select * into target from pgrecs.semantic_list_target(model_id);

    -- 1. the items' own lists, from the model's embeddings (active neighbours only)
    execute format(
        'delete from %s as nb where nb.tenant_id = $1 and nb.%I = %L and nb.item_id = any($2)',
        target.relation, target.key_column, target.key_value)
    using tenant, item_ids;

    -- another worker (or this worker's background list writer) may have just entered one of
    -- these pairs through step 2 of its own call: take the fresh score instead of failing
    execute format(
        'insert into %1$s (tenant_id, %2$I, item_id, neighbor_item_id, score, rank) '
        'select $1, %3$L, e.item_id, s.item_id, s.score, s.rank '
        'from pgrecs.item_embeddings as e '
        'join pgrecs.items as i on i.item_id = e.item_id and i.active '
        'cross join lateral pgrecs.semantic_search(e.embedding, $3, ''{}'', $4, e.item_id) as s '
        'where e.item_id = any($2) and e.model_id = $4 and e.tenant_id = $1 '
        'on conflict (tenant_id, %2$I, item_id, neighbor_item_id) '
        'do update set score = excluded.score, rank = excluded.rank, computed_at = now()',
        target.relation, target.key_column, target.key_value)
    using tenant, item_ids, n, target.list_model_id;
    get diagnostics written = row_count;
    -- a bulk rewrite leaves the statistics describing the old lists (or none, on a first build):
    -- with them the planner picks scans of every list per candidate in the steps below, and later
    -- single-item updates (the watcher's) take seconds. Analyzed before the steps that read them
    if cardinality(item_ids) >= 100 then
        execute format('analyze %s', target.relation);
    end if;

    if not propagate then
        return written;
    end if;

    -- 2. an item embedded again (its text changed) still sits in other lists with the score of its
    -- old embedding: rescore it there, so those lists (which recs.similar_items serves) rank it right
    execute format(
        'with rescored as ('
        '    update %1$s as nb set score = (1 - (ey.embedding <=> ex.embedding))::real, computed_at = now()'
        '    from pgrecs.item_embeddings as ey, pgrecs.item_embeddings as ex'
        '    where nb.neighbor_item_id = any($2) and nb.tenant_id = $1 and nb.%2$I = %3$L'
        '        and not (nb.item_id = any($2))'
        '        and ey.item_id = nb.item_id and ey.model_id = $3'
        '        and ex.item_id = nb.neighbor_item_id and ex.model_id = $3'
        '        and nb.score <> (1 - (ey.embedding <=> ex.embedding))::real'
        '    returning nb.item_id'
        ') select array_agg(distinct rescored.item_id) from rescored',
        target.relation, target.key_column, target.key_value)
    into rescored
    using tenant, item_ids, target.list_model_id;

    -- 3. each item also enters the lists of its neighbours when it beats their current N-th
    execute format(
        'with candidates as ('
        '    select nb.neighbor_item_id as item_id, nb.item_id as neighbor_item_id, nb.score'
        '    from %1$s as nb'
        '    where nb.tenant_id = $1 and nb.%2$I = %3$L and nb.item_id = any($2)'
        '        and not (nb.neighbor_item_id = any($2))'
        '), current_lists as ('
        '    select c.item_id, count(x.neighbor_item_id) as size, min(x.score) as worst'
        '    from (select distinct item_id from candidates) as c'
        '    left join %1$s as x on x.tenant_id = $1 and x.%2$I = %3$L and x.item_id = c.item_id'
        '    group by c.item_id'
        '), entered as ('
        '    insert into %1$s as nb (tenant_id, %2$I, item_id, neighbor_item_id, score, rank)'
        '    select $1, %3$L, c.item_id, c.neighbor_item_id, c.score, 32767'
        '    from candidates as c'
        '    join current_lists as l on l.item_id = c.item_id'
        '    where l.size < $3 or c.score > l.worst'
        '    order by c.item_id, c.neighbor_item_id'
        '    on conflict (tenant_id, %2$I, item_id, neighbor_item_id)'
        '        do update set score = excluded.score, computed_at = now()'
        '    returning nb.item_id'
        ') select array_agg(distinct entered.item_id) from entered',
        target.relation, target.key_column, target.key_value)
    into touched
    using tenant, item_ids, n;

    -- 4. re-rank the lists that changed and keep their top n
    touched := array(select distinct x from unnest(coalesce(touched, '{}') || coalesce(rescored, '{}')) as x);
    if cardinality(touched) > 0 then
        execute format(
            'with ranked as ('
            '    select x.item_id, x.neighbor_item_id,'
            '        row_number() over (partition by x.item_id order by x.score desc, ni.tie_key) as rn'
            '    from %1$s as x'
            '    join pgrecs.items as ni on ni.item_id = x.neighbor_item_id'
            '    where x.tenant_id = $1 and x.%2$I = %3$L and x.item_id = any($2)'
            '), dropped as ('
            '    delete from %1$s as x using ranked as r'
            '    where r.rn > $3 and x.tenant_id = $1 and x.%2$I = %3$L'
            '        and x.item_id = r.item_id and x.neighbor_item_id = r.neighbor_item_id'
            ') update %1$s as x set rank = r.rn'
            ' from ranked as r'
            ' where r.rn <= $3 and x.tenant_id = $1 and x.%2$I = %3$L'
            '     and x.item_id = r.item_id and x.neighbor_item_id = r.neighbor_item_id and x.rank <> r.rn',
            target.relation, target.key_column, target.key_value)
        using tenant, touched, n;
    end if;
    return written;
end
$$;
comment on function pgrecs.refresh_semantic_neighbors(bigint[], integer, boolean, smallint) is
    'Recompute the semantic top-n neighbour lists of items for a model (the default model when null) and, when '
    'propagate, insert each item into the lists of its neighbours where it beats their n-th; returns the rows '
    'written for the items themselves; when propagate, also rescore the items where they sit in other lists (their '
    'embedding changed). The default model''s lists are pgrecs.item_neighbors (signal semantic), '
    'any other model''s pgrecs.semantic_neighbors.';

create or replace function pgrecs.remove_semantic_neighbors(
    item_ids bigint[],
    n integer default 50,
    model_id smallint default null
)
returns integer
language plpgsql
volatile
as $$
declare
    target record;
    tenant text := coalesce(nullif(current_setting('pgrecs.tenant', true), ''), 'default');
    affected bigint[];
    removed integer;
begin
    select * into target from pgrecs.semantic_list_target(model_id);
    execute format(
        'select array_agg(distinct nb.item_id) from %s as nb '
        'where nb.tenant_id = $1 and nb.%I = %L and nb.neighbor_item_id = any($2) and not (nb.item_id = any($2))',
        target.relation, target.key_column, target.key_value)
    into affected
    using tenant, item_ids;

    execute format(
        'delete from %s as nb where nb.tenant_id = $1 and nb.%I = %L '
        'and (nb.item_id = any($2) or nb.neighbor_item_id = any($2))',
        target.relation, target.key_column, target.key_value)
    using tenant, item_ids;
    get diagnostics removed = row_count;

    -- refill the lists that lost an entry (their own lists only: nothing new entered the catalog)
    if affected is not null then
        perform pgrecs.refresh_semantic_neighbors(affected, n, false, target.list_model_id);
    end if;
    return removed;
end
$$;
comment on function pgrecs.remove_semantic_neighbors(bigint[], integer, smallint) is
    'Take items (inactive, not embeddable) out of a model''s semantic neighbour lists (the default model when '
    'null), refilling the lists they left.';
