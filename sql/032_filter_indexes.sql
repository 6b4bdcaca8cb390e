-- Partial HNSW indexes for hot category filters (pgrecs.semantic_search searches a category's own
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
