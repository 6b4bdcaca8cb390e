-- Semantic retrieval core: models and their indexes, the strategy for a filter (estimate, count,
-- choose) and the generated pgrecs.semantic_search.
-- The embedding queue is in 031_embedding_queue.sql, hot-filter indexes in 032_filter_indexes.sql,
-- the maintained semantic neighbour lists and the body of recs.similar_items in
-- 033_semantic_neighbors.sql, the filter vocabulary (pgrecs.parse_filters) in 045_filters.sql and the public
-- functions in 069_recs.sql.
--
-- Idempotent (create or replace), re-applied on every `pgrecs migrate`. Tables and the default
-- model's index live in migrations/versions/0002_semantic.py.
--
-- Tenant: every function reads pgrecs.current_tenant() (sql/001_common.sql): the GUC pgrecs.tenant,
-- 'default' when it is unset or empty.

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
-- Retrieval core
-------------------------------------------------------------------------------------------------

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
    tenant text := pgrecs.current_tenant();
    m_dimensions integer;
    m_ef_search integer;
    m_exact_max integer;
    f pgrecs.item_filter;
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

    f := pgrecs.parse_filters(filters);
    v_active := true;
    v_category := f.category;
    v_price_min := f.price_min;
    v_price_max := f.price_max;
    v_in_stock := f.in_stock;
    -- the dimensions and model id are integers from the models table, written as literals so the
    -- planner matches the partial expression index of this model
    distance := format('(e.embedding::halfvec(%s) <=> $1::halfvec(%s))', m_dimensions, m_dimensions);
    predicate := pgrecs.similarity_filter_sql(v_active, v_category, v_price_min, v_price_max, v_in_stock,
                                              f.brand, f.brands, f.exclude_brands, f.exclude);

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
        using query, tenant, v_active, v_category, v_price_min, v_price_max, v_in_stock, exclude_item_id, k,
            f.brand, f.brands, f.exclude_brands, f.exclude;
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
    using query, tenant, v_active, v_category, v_price_min, v_price_max, v_in_stock, exclude_item_id, k,
        f.brand, f.brands, f.exclude_brands, f.exclude;
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
