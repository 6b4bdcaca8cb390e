-- The public API for apps and analysts: recommendations, similar items, search and
-- explanations, PostgREST-style. Their COMMENT ON text is the API documentation; most are thin
-- wrappers over a pgrecs.* body in the file of its topic. The merchant side of the same API
-- (experiments, business rules, embedding decisions, console reports, the catalog audit) is
-- sql/069_recs_merchant.sql; together the two files hold every recs.* function. Applied after the
-- files that define what these call, before sql/070_security.sql grants them to the API role.
--
-- Analysts call them with named arguments: select * from recs.recommend_for_user(user_id => 'u42', k => 20).

-------------------------------------------------------------------------------------------------
-- External ids (the shop's ids; every function below that takes text ids resolves them here)
-------------------------------------------------------------------------------------------------

create or replace function recs.item_id(item text)
returns bigint
language plpgsql stable parallel safe
as $$
declare
    v_id bigint;
begin
    select i.item_id into v_id from pgrecs.items as i
    where i.tenant_id = pgrecs.current_tenant() and i.external_id = item_id.item;
    if v_id is null then
        raise exception 'unknown item: %', item_id.item using errcode = 'P0002';
    end if;
    return v_id;
end
$$;
comment on function recs.item_id(text) is
    'The item_id of an item by its external id; an item unknown to the tenant raises P0002 (no_data_found) "unknown item: <id>". Example: select recs.item_id(item => ''22728'').';

create or replace function recs.item_ids(items text[])
returns bigint[]
language plpgsql stable parallel safe
as $$
declare
    v_ids bigint[];
    v_unknown boolean;
    v_first text;
begin
    -- one statement for the whole list, in its order
    select coalesce(array_agg(i.item_id order by x.n), '{}'),
           coalesce(bool_or(i.item_id is null), false),
           (array_agg(x.external_id order by x.n) filter (where i.item_id is null))[1]
    into v_ids, v_unknown, v_first
    from unnest(item_ids.items) with ordinality as x (external_id, n)
    left join pgrecs.items as i on i.tenant_id = pgrecs.current_tenant() and i.external_id = x.external_id;
    if v_unknown then
        raise exception 'unknown item: %', coalesce(v_first, 'null') using errcode = 'P0002';
    end if;
    return v_ids;
end
$$;
comment on function recs.item_ids(text[]) is
    'The item_ids of items by their external ids, in the same order, in one lookup; the first item unknown to the tenant raises P0002 "unknown item: <id>". Example: select recs.item_ids(items => array[''22728'', ''22727'']).';

-------------------------------------------------------------------------------------------------
-- Recommendations (pgrecs.rank_items: sql/050_scoring.sql)
-------------------------------------------------------------------------------------------------

create or replace function recs.recommend_for_item(
    item bigint,
    k integer default 10,
    placement text default 'pdp_similar',
    filters jsonb default '{}',
    explain boolean default false
)
returns table (item_id bigint, external_id text, score double precision, rank integer, contributions jsonb,
    reasons text[])
language plpgsql stable parallel safe
as $$
begin
    if not exists (select 1 from pgrecs.items i where i.item_id = item and i.tenant_id = pgrecs.current_tenant()) then
        raise exception 'unknown item: %', item using errcode = 'P0002';
    end if;
    return query
    -- a null label: the anchor is the item of the page itself (reasons call it "this item")
    select * from pgrecs.rank_items(placement, array[item], array[1]::real[], array[null]::text[],
                                    array[item], k, filters, explain);
end
$$;
comment on function recs.recommend_for_item(bigint, integer, text, jsonb, boolean) is
    'Items to show next to one item (by item_id): semantic, co-occurrence and learned neighbours plus popular items of its category, fused by the placement''s weights, with business rules applied. Returns rank, score, per-signal contributions and readable reasons; explain => true returns the full breakdown.';

create or replace function recs.recommend_for_item(
    item text,
    k integer default 10,
    placement text default 'pdp_similar',
    filters jsonb default '{}',
    explain boolean default false
)
returns table (item_id bigint, external_id text, title text, score double precision, rank integer,
    contributions jsonb, reasons text[])
language sql stable parallel safe
as $$
    select r.item_id, r.external_id, i.title, r.score, r.rank, r.contributions, r.reasons
    from recs.recommend_for_item(recs.item_id(recommend_for_item.item), recommend_for_item.k,
                                 recommend_for_item.placement, recommend_for_item.filters,
                                 recommend_for_item.explain) as r
    -- the title by one primary-key probe per row, whatever the row estimate
    cross join lateral (select i.title from pgrecs.items as i where i.item_id = r.item_id limit 1) as i
    order by r.rank
$$;
comment on function recs.recommend_for_item(text, integer, text, jsonb, boolean) is
    'recs.recommend_for_item by the item''s external id, with each item''s title. An unknown item raises P0002 "unknown item: <id>". Example: select * from recs.recommend_for_item(item => ''22728'', k => 10).';

create or replace function recs.recommend_for_user(
    user_id bigint,
    k integer default 10,
    placement text default 'home_for_you',
    filters jsonb default '{}',
    explain boolean default false
)
returns table (item_id bigint, external_id text, score double precision, rank integer, contributions jsonb,
    reasons text[])
language plpgsql stable parallel safe
as $$
#variable_conflict use_column
declare
    t text := pgrecs.current_tenant();
    p pgrecs.placements;
    a_ids bigint[];
    a_weights real[];
    a_labels text[];
    a_positions integer[];
    v_exclude bigint[] := '{}';
    v_cold_reason text;
begin
    -- a user unknown to the tenant is a new visitor, not an error: no history, the cold-start list
    p := pgrecs.placement_row(recommend_for_user.placement);
    -- anchors most recent first (the order the next-item signal reads)
    select coalesce(array_agg(h.item_id order by h.ord), '{}'),
           coalesce(array_agg(h.weight order by h.ord), '{}'),
           coalesce(array_agg(h.label order by h.ord), '{}'),
           coalesce(array_agg(h.recency_position order by h.ord), '{}')
    into a_ids, a_weights, a_labels, a_positions
    from pgrecs.user_history(recommend_for_user.user_id, p.placement)
         with ordinality as h (item_id, weight, label, purchased, recency_position, ord);
    if not p.allow_repeats then
        -- no repeats: neither what the user bought nor the history items the list is built from
        -- (as recommend_for_item leaves out its item and recommend its examples)
        select coalesce(array_agg(distinct e.item_id), '{}') || a_ids into v_exclude
        from pgrecs.events e
        where e.tenant_id = t and e.user_id = recommend_for_user.user_id and e.event_type = 'purchase';
    end if;
    if cardinality(a_ids) = 0 then
        -- cold start: with no anchors the placement ranks by popularity (within the category
        -- filter when one is given); the first reason says why the list is not personal
        v_cold_reason := 'new visitor: ' || coalesce(
            'popular in ' || array_to_string((pgrecs.parse_filters(
                p.default_filters || coalesce(recommend_for_user.filters, '{}'))).category, ' > '),
            'popular with everyone');
    end if;
    return query
    select r.item_id, r.external_id, r.score, r.rank, r.contributions,
           case when v_cold_reason is null then r.reasons else v_cold_reason || r.reasons end
    from pgrecs.rank_items(p.placement, a_ids, a_weights, a_labels, v_exclude,
                           recommend_for_user.k, recommend_for_user.filters, recommend_for_user.explain,
                           a_positions) r;
end
$$;
comment on function recs.recommend_for_user(bigint, integer, text, jsonb, boolean) is
    'Personal recommendations for a user (by user_id) from the live event history: several interests (the neighbours of each recent item, weighted by event type and recency); purchased items and the history items it is built from excluded unless the placement allows repeats. A user without history (unknown to the tenant, or with no weighted events) gets the placement''s cold-start list: popularity, within the category filter when one is given, the first reason starting "new visitor: ". Same output as recommend_for_item.';

create or replace function recs.recommend_for_user(
    user_id text,
    k integer default 10,
    placement text default 'home_for_you',
    filters jsonb default '{}',
    explain boolean default false
)
returns table (item_id bigint, external_id text, title text, score double precision, rank integer,
    contributions jsonb, reasons text[])
language sql stable parallel safe
as $$
    -- an external id never seen is a new visitor (a null user_id): the cold-start list
    select r.item_id, r.external_id, i.title, r.score, r.rank, r.contributions, r.reasons
    from recs.recommend_for_user(
        (select u.user_id from pgrecs.users as u
         where u.tenant_id = pgrecs.current_tenant() and u.external_id = recommend_for_user.user_id),
        recommend_for_user.k, recommend_for_user.placement, recommend_for_user.filters,
        recommend_for_user.explain) as r
    -- the title by one primary-key probe per row, whatever the row estimate
    cross join lateral (select i.title from pgrecs.items as i where i.item_id = r.item_id limit 1) as i
    order by r.rank
$$;
comment on function recs.recommend_for_user(text, integer, text, jsonb, boolean) is
    'recs.recommend_for_user by the user''s external id, with each item''s title; an id never seen gets the cold-start list. Example: select * from recs.recommend_for_user(user_id => ''12583'', k => 10).';

create or replace function recs.recommend(
    examples_positive bigint[],
    examples_negative bigint[] default '{}',
    k integer default 10,
    placement text default 'more_like_these',
    filters jsonb default '{}',
    explain boolean default false
)
returns table (item_id bigint, external_id text, score double precision, rank integer, contributions jsonb,
    reasons text[])
language plpgsql stable parallel safe
as $$
declare
    p pgrecs.placements;
    missing bigint;
    pos bigint[] := coalesce(examples_positive, '{}');
    neg bigint[] := coalesce(examples_negative, '{}');
begin
    select x into missing
    from unnest(pos || neg) x
    where not exists (select 1 from pgrecs.items i where i.item_id = x and i.tenant_id = pgrecs.current_tenant())
    limit 1;
    if missing is not null then
        raise exception 'unknown item: %', missing using errcode = 'P0002';
    end if;
    p := pgrecs.placement_row(recommend.placement);
    return query
    select * from pgrecs.rank_items(
        p.placement,
        pos || neg,
        array_fill(1::real, array[cardinality(pos)]) || array_fill((-p.negative_weight)::real, array[cardinality(neg)]),
        array_fill(' (your example)'::text, array[cardinality(pos)]) || array_fill(' (not like this)'::text, array[cardinality(neg)]),
        pos || neg, recommend.k, recommend.filters, recommend.explain);
end
$$;
comment on function recs.recommend(bigint[], bigint[], integer, text, jsonb, boolean) is
    'More like these, less like those: the neighbour lists of the positive examples minus those of the negative ones (weighted by the placement''s negative_weight), popularity as a fallback, with the placement''s rules. Examples themselves are never returned.';

create or replace function recs.recommend(
    examples text[],
    negative_examples text[] default '{}',
    k integer default 10,
    placement text default 'more_like_these',
    filters jsonb default '{}',
    explain boolean default false
)
returns table (item_id bigint, external_id text, title text, score double precision, rank integer,
    contributions jsonb, reasons text[])
language plpgsql stable parallel safe
as $$
#variable_conflict use_column
declare
    pos bigint[];
    neg bigint[];
begin
    -- every example resolved in one statement, whatever their number; the first unknown one is named
    pos := recs.item_ids(coalesce(recommend.examples, '{}'));
    neg := recs.item_ids(coalesce(recommend.negative_examples, '{}'));
    return query
    select r.item_id, r.external_id, i.title, r.score, r.rank, r.contributions, r.reasons
    from recs.recommend(pos, neg, recommend.k, recommend.placement, recommend.filters, recommend.explain) as r
    -- the title by one primary-key probe per row, whatever the row estimate
    cross join lateral (select i.title from pgrecs.items as i where i.item_id = r.item_id limit 1) as i
    order by r.rank;
end
$$;
comment on function recs.recommend(text[], text[], integer, text, jsonb, boolean) is
    'recs.recommend by the examples'' external ids, with each item''s title. An unknown example raises P0002 "unknown item: <id>". Example: select * from recs.recommend(examples => array[''22728'', ''22727''], negative_examples => array[''21731''], k => 10).';

create or replace function recs.rank_request(
    endpoint text,
    k integer default 10,
    placement text default null,
    filters jsonb default '{}',
    explain boolean default false,
    item text default null,
    user_id text default null,
    examples text[] default '{}',
    negative_examples text[] default '{}'
)
returns table (item_id bigint, external_id text, title text, score double precision, rank integer,
    contributions jsonb, reasons text[])
language sql stable parallel safe
as $$
    select * from pgrecs.rank_request(endpoint => rank_request.endpoint, k => rank_request.k,
        placement => rank_request.placement, filters => rank_request.filters,
        explain => rank_request.explain, item => rank_request.item, user_id => rank_request.user_id,
        examples => rank_request.examples, negative_examples => rank_request.negative_examples)
$$;
comment on function recs.rank_request(text, integer, text, jsonb, boolean, text, text, text[], text[]) is
    'One recommendation request as the HTTP API takes it, by external ids: endpoint ''item'' (recs.recommend_for_item of item), ''user'' (recs.recommend_for_user of user_id) or ''examples'' (recs.recommend of examples and negative_examples); a null placement is the endpoint''s default. Logs nothing: recs.serve_recommendations ranks and logs. Example: select * from recs.rank_request(endpoint => ''item'', item => ''22728'', k => 10).';

create or replace function recs.log_recommendations(
    request_id uuid,
    endpoint text,
    placement text,
    k integer,
    filters jsonb,
    user_id text,
    anchors text[],
    item_ids bigint[],
    scores real[]
)
returns void
language sql volatile
as $$
    select pgrecs.log_recommendations(request_id => log_recommendations.request_id,
        endpoint => log_recommendations.endpoint, placement => log_recommendations.placement,
        k => log_recommendations.k, filters => log_recommendations.filters,
        user_id => log_recommendations.user_id, anchors => log_recommendations.anchors,
        item_ids => log_recommendations.item_ids, scores => log_recommendations.scores)
$$;
comment on function recs.log_recommendations(uuid, text, text, integer, jsonb, text, text[], bigint[], real[]) is
    'Logs one served recommendation list in pgrecs.recommendation_requests under request_id (which later events carry): the user and the anchor items by external id (a user never seen is logged as none), the served item_ids and scores in rank order. Turns synchronous_commit off for the calling transaction: call it in a transaction that writes nothing else. recs.serve_recommendations calls it; a standby ranks with recs.rank_request and logs with this on the primary.';

create or replace function recs.serve_recommendations(
    request_id uuid,
    endpoint text,
    k integer default 10,
    placement text default null,
    filters jsonb default '{}',
    explain boolean default false,
    item text default null,
    user_id text default null,
    examples text[] default '{}',
    negative_examples text[] default '{}'
)
returns table (item_id bigint, external_id text, title text, score double precision, rank integer,
    contributions jsonb, reasons text[])
language sql volatile
as $$
    select * from pgrecs.serve_recommendations(request_id => serve_recommendations.request_id,
        endpoint => serve_recommendations.endpoint, k => serve_recommendations.k,
        placement => serve_recommendations.placement, filters => serve_recommendations.filters,
        explain => serve_recommendations.explain, item => serve_recommendations.item,
        user_id => serve_recommendations.user_id, examples => serve_recommendations.examples,
        negative_examples => serve_recommendations.negative_examples)
$$;
comment on function recs.serve_recommendations(uuid, text, integer, text, jsonb, boolean, text, text, text[], text[]) is
    'recs.rank_request, and the served list logged under request_id by recs.log_recommendations, in one call (the HTTP API''s call on the primary; synchronous_commit is off for its transaction). Example: select * from recs.serve_recommendations(request_id => gen_random_uuid(), endpoint => ''user'', user_id => ''12583'', k => 10).';

-------------------------------------------------------------------------------------------------
-- Semantic search (sql/030_semantic.sql)
-------------------------------------------------------------------------------------------------

create or replace function recs.search_by_vector(
    query_embedding halfvec,
    k integer default 10,
    filters jsonb default '{}',
    model text default null
)
returns table (item_id bigint, external_id text, title text, score real, rank integer)
language sql stable
as $$
    select s.item_id, s.external_id, i.title, s.score, s.rank
    from pgrecs.semantic_search(
        query_embedding, k, filters, (pgrecs.resolve_model(model)).model_id, null) as s
    -- the title by one primary-key probe per row, whatever the row estimate
    cross join lateral (select i.title from pgrecs.items as i where i.item_id = s.item_id limit 1) as i
    order by s.rank
$$;
comment on function recs.search_by_vector(halfvec, integer, jsonb, text) is
    'The k active items nearest (cosine) to a query embedding for a model (default model when null). '
    'filters: the vocabulary of pgrecs.parse_filters, as for recommendations: {"category": "A > B" (a prefix of '
    'category_path), "brand", "brands", "exclude_brands", "price_min", "price_max", "in_stock": true (stock null '
    'counts as in stock), "exclude": [internal item ids]}. '
    'Returns item_id, external_id, title, score (cosine similarity) and rank (1 = nearest). '
    'Example: select * from recs.search_by_vector(query_embedding => $1, k => 10, filters => ''{"price_max": 20}'').';

-- The hot path (unfiltered, the default model, k within the maintained list) is plain SQL that the
-- planner inlines into the caller's statement: an index-only read of the item's list
-- (item_neighbors_ranked), joined to its active neighbours, the top k by score (ties by tie_key, as
-- the lists are ranked). Anything else (filters, a named model, a list shorter than k, an unknown
-- item) goes to pgrecs.similar_to_item, which decides.
create or replace function recs.similar_items(
    item_id bigint,
    k integer default 10,
    filters jsonb default '{}',
    model text default null
)
returns table (item_id bigint, external_id text, score real, rank integer)
language sql stable
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
            and nb.tenant_id = pgrecs.current_tenant()
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

create or replace function recs.similar_items(
    item text,
    k integer default 10,
    filters jsonb default '{}',
    model text default null
)
returns table (item_id bigint, external_id text, title text, score real, rank integer)
language sql stable
as $$
    select s.item_id, s.external_id, i.title, s.score, s.rank
    from recs.similar_items(recs.item_id(similar_items.item), similar_items.k, similar_items.filters,
                            similar_items.model) as s
    -- the title by one primary-key probe per row, whatever the row estimate
    cross join lateral (select i.title from pgrecs.items as i where i.item_id = s.item_id limit 1) as i
    order by s.rank
$$;
comment on function recs.similar_items(text, integer, jsonb, text) is
    'recs.similar_items by the item''s external id, with each item''s title; an unknown item raises P0002 "unknown item: <id>". '
    'Example: select * from recs.similar_items(item => ''22728'', k => 10).';

-------------------------------------------------------------------------------------------------
-- Explanations (pgrecs.why_not: sql/064_why_not.sql)
-------------------------------------------------------------------------------------------------

create or replace function recs.why_not(
    item text,
    placement text default 'pdp_similar',
    context_item text default null,
    context_user text default null,
    k integer default 10,
    filters jsonb default '{}'
)
returns table (reason text, detail text, stage integer, rank integer, score double precision,
    kth_score double precision, rule_id bigint, facts jsonb)
language sql stable parallel safe
as $$
    select * from pgrecs.why_not(why_not.item, why_not.placement, why_not.context_item, why_not.context_user, why_not.k, why_not.filters)
$$;
comment on function recs.why_not(text, text, text, text, integer, jsonb) is
    'Why an item (external id) is not in a placement''s top k for a context (context_item or context_user, external ids): '
    'shown (and where), excluded by the context, inactive, out_of_stock, price, outside_category, brand, blocked (rule_id), '
    'no_embedding (and why), not_candidate (signal by signal), no_score, ranked (its rank and score against the k-th), '
    'capped (brand or category), mmr (the similar item chosen), pinned_out. Follows pgrecs.rank_items stage by stage; '
    'a user never seen is a new visitor, explained against the cold-start list recs.recommend_for_user serves. '
    'Example: select * from recs.why_not(item => ''22728'', placement => ''pdp_similar'', context_item => ''22727'').';
