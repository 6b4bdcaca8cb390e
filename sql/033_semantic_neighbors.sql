-- Semantic neighbour lists for hybrid scoring (pgrecs.semantic_lists: where each model's live),
-- maintained by the embed workers; pgrecs.similar_to_item, the body of recs.similar_items, reads
-- them first.

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
    -- one list writer at a time per tenant and model: a writer rewrites and re-ranks other items'
    -- lists too (an item enters its neighbours' lists), so two at once deadlock on those rows or
    -- cut each other's lists short. The expensive part, encoding, stays parallel in the workers
    perform pg_advisory_xact_lock(hashtext('pgrecs.semantic_lists'),
                                  hashtext(pgrecs.current_tenant() || '/' || coalesce(semantic_list_target.model_id,
                                           (pgrecs.resolve_model(null)).model_id)));
end
$$;
comment on function pgrecs.semantic_list_target(smallint) is
    'Where a model''s semantic neighbour lists are written (the default model: pgrecs.item_neighbors, signal '
    'semantic; any other: pgrecs.semantic_neighbors), taking the cut-over lock shared and the lists'' writer lock '
    '(one writer per tenant and model) for the transaction; internal to refresh/remove_semantic_neighbors.';

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
    tenant text := pgrecs.current_tenant();
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
    -- single-item updates (the watcher's) take seconds. Analyzed before the steps that read them,
    -- after a bulk batch or once the table outgrew the size its statistics describe by a fifth (a
    -- catalog embedded in small batches would otherwise build its lists in quadratic time until
    -- autovacuum came by). Measured by the table's pages, which grow at once, rather than by the
    -- cumulative statistics' counters, which reach shared memory up to a second late
    if cardinality(item_ids) >= 100
        or (select pg_catalog.pg_relation_size(c.oid) / pg_catalog.current_setting('block_size')::integer
                > 8 + 1.2 * c.relpages
            from pg_catalog.pg_class as c where c.oid = target.relation::regclass) then
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
    tenant text := pgrecs.current_tenant();
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

-------------------------------------------------------------------------------------------------
-- The body of recs.similar_items: the maintained list, else the semantic search
-------------------------------------------------------------------------------------------------

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
    tenant text := pgrecs.current_tenant();
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
