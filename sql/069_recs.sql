-- The public API: every recs.* function, PostgREST-style. Their COMMENT ON text is the API
-- documentation; most are thin wrappers over a pgrecs.* body in the file of its topic. Applied after
-- the files that define what these call, before sql/070_security.sql grants them to the API role.
--
-- Analysts call them with named arguments: select * from recs.recommend_for_user(user_id => 'u42', k => 20).

-------------------------------------------------------------------------------------------------
-- External ids (the shop's ids; every function below that takes text ids resolves them here)
-------------------------------------------------------------------------------------------------

create or replace function recs.item_id(item text)
returns bigint
language plpgsql
stable parallel safe
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
language plpgsql
stable parallel safe
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
returns table (item_id bigint, external_id text, score double precision, rank integer,
               contributions jsonb, reasons text[])
language plpgsql
stable parallel safe
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
language sql
stable parallel safe
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
returns table (item_id bigint, external_id text, score double precision, rank integer,
               contributions jsonb, reasons text[])
language plpgsql
stable parallel safe
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
language sql
stable parallel safe
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
returns table (item_id bigint, external_id text, score double precision, rank integer,
               contributions jsonb, reasons text[])
language plpgsql
stable parallel safe
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
language plpgsql
stable parallel safe
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
language plpgsql
stable parallel safe
as $$
begin
    -- a null placement is the endpoint's default (the default of the function it calls)
    if endpoint = 'item' then
        return query select * from recs.recommend_for_item(
            item => rank_request.item, k => rank_request.k,
            placement => coalesce(rank_request.placement, 'pdp_similar'),
            filters => rank_request.filters, explain => rank_request.explain);
    elsif endpoint = 'user' then
        return query select * from recs.recommend_for_user(
            user_id => rank_request.user_id, k => rank_request.k,
            placement => coalesce(rank_request.placement, 'home_for_you'),
            filters => rank_request.filters, explain => rank_request.explain);
    elsif endpoint = 'examples' then
        return query select * from recs.recommend(
            examples => rank_request.examples, negative_examples => rank_request.negative_examples,
            k => rank_request.k, placement => coalesce(rank_request.placement, 'more_like_these'),
            filters => rank_request.filters, explain => rank_request.explain);
    else
        raise exception 'unknown endpoint: %', endpoint using errcode = '22023';
    end if;
end
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
language plpgsql
volatile
as $$
begin
    -- the log row is not worth a synchronous WAL flush (a crash may lose the last fraction of a second
    -- of log rows, never an event); this applies to the caller's whole transaction, which should write
    -- nothing else
    perform set_config('synchronous_commit', 'off', true);
    insert into pgrecs.recommendation_requests
        (request_id, tenant_id, endpoint, placement, user_id, anchor_item_ids, k, filters, item_ids, scores)
    select log_recommendations.request_id, pgrecs.current_tenant(), log_recommendations.endpoint,
           log_recommendations.placement,
           -- a new visitor (an id never seen) is logged without a user
           (select u.user_id from pgrecs.users as u
            where u.tenant_id = pgrecs.current_tenant() and u.external_id = log_recommendations.user_id),
           coalesce((select array_agg(i.item_id order by a.n)
                     from unnest(log_recommendations.anchors) with ordinality as a (external_id, n)
                     join pgrecs.items as i
                         on i.tenant_id = pgrecs.current_tenant() and i.external_id = a.external_id), '{}'),
           log_recommendations.k, coalesce(log_recommendations.filters, '{}'),
           coalesce(log_recommendations.item_ids, '{}'), coalesce(log_recommendations.scores, '{}');
end
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
language plpgsql
volatile
as $$
#variable_conflict use_column
declare
    r record;
    v_items bigint[] := '{}';
    v_scores real[] := '{}';
    v_placement text := coalesce(serve_recommendations.placement, case serve_recommendations.endpoint
        when 'item' then 'pdp_similar' when 'user' then 'home_for_you' else 'more_like_these' end);
begin
    for r in
        select * from recs.rank_request(serve_recommendations.endpoint, serve_recommendations.k, v_placement,
                                        serve_recommendations.filters, serve_recommendations.explain,
                                        serve_recommendations.item, serve_recommendations.user_id,
                                        serve_recommendations.examples, serve_recommendations.negative_examples)
    loop
        item_id := r.item_id;
        external_id := r.external_id;
        title := r.title;
        score := r.score;
        rank := r.rank;
        contributions := r.contributions;
        reasons := r.reasons;
        v_items := v_items || r.item_id;
        v_scores := v_scores || r.score::real;
        return next;
    end loop;
    perform recs.log_recommendations(
        serve_recommendations.request_id, serve_recommendations.endpoint, v_placement, serve_recommendations.k,
        serve_recommendations.filters,
        serve_recommendations.user_id,
        case serve_recommendations.endpoint
            when 'item' then array[serve_recommendations.item]
            when 'examples' then coalesce(serve_recommendations.examples, '{}')
                                 || coalesce(serve_recommendations.negative_examples, '{}')
            else '{}'::text[]
        end,
        v_items, v_scores);
end
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
language sql
stable
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
language sql
stable
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
language sql
stable parallel safe
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

-------------------------------------------------------------------------------------------------
-- Experiments (sql/060_experiments.sql)
-------------------------------------------------------------------------------------------------

create or replace function recs.assign_variant(experiment text, user_id text)
returns table (
    experiment_name text,
    variant text,
    placement text,
    is_control boolean,
    bucket double precision
)
language sql
stable parallel safe
as $$
    select * from pgrecs.assign_variant(assign_variant.experiment, assign_variant.user_id)
$$;
comment on function recs.assign_variant(text, text) is
    'Deterministic variant (and the placement to serve) for a user external id in a running experiment; '
    'no row when the experiment is unknown or not running. Example: '
    'select * from recs.assign_variant(experiment => ''home-v2'', user_id => ''u42'').';

create or replace function recs.experiment_user_outcomes(experiment text, tenant text default null)
returns table (
    variant text,
    user_id bigint,
    impressions bigint,
    clicks bigint,
    add_to_carts bigint,
    purchases bigint,
    revenue double precision,
    request_attributed_events bigint
)
language sql
stable parallel safe
as $$
    select * from pgrecs.experiment_user_outcomes(experiment_user_outcomes.experiment, experiment_user_outcomes.tenant)
$$;
comment on function recs.experiment_user_outcomes(text, text) is
    'One row per exposed user and variant (an impression inside the experiment window attributed to the variant) with '
    'outcome counts. An event counts for the variant serving the placement of its request_id '
    '(pgrecs.recommendation_requests) when known, else for the user''s hashed variant; request_attributed_events '
    'counts the former. tenant: the session''s tenant when null (row-level security still applies). Example: '
    'select variant, count(*) from recs.experiment_user_outcomes(experiment => ''home-v2'') group by 1.';

create or replace function recs.experiment_report(
    experiment text, z double precision default 1.959964, tenant text default null
)
returns table (
    variant text,
    placement text,
    is_control boolean,
    users bigint,
    impressions bigint,
    clicks bigint,
    add_to_carts bigint,
    orders bigint,
    revenue double precision,
    ctr double precision,
    ctr_low double precision,
    ctr_high double precision,
    conversion double precision,
    conversion_low double precision,
    conversion_high double precision,
    revenue_per_user double precision,
    revenue_per_user_low double precision,
    revenue_per_user_high double precision,
    average_order_value double precision,
    average_order_value_low double precision,
    average_order_value_high double precision,
    ctr_vs_control double precision,
    ctr_vs_control_low double precision,
    ctr_vs_control_high double precision,
    ctr_vs_control_relative double precision,
    conversion_vs_control double precision,
    conversion_vs_control_low double precision,
    conversion_vs_control_high double precision,
    conversion_vs_control_relative double precision,
    revenue_per_user_vs_control double precision,
    revenue_per_user_vs_control_low double precision,
    revenue_per_user_vs_control_high double precision,
    revenue_per_user_vs_control_relative double precision,
    average_order_value_vs_control double precision,
    average_order_value_vs_control_low double precision,
    average_order_value_vs_control_high double precision,
    average_order_value_vs_control_relative double precision
)
language sql
stable parallel safe
as $$
    select * from pgrecs.experiment_report(experiment_report.experiment, experiment_report.z, experiment_report.tenant)
$$;
comment on function recs.experiment_report(text, double precision, text) is
    'Per-variant results for exposed users with intervals at z (1.96: 95%): CTR (ratio of per-user sums, delta '
    'method), conversion (share of users with a purchase, Wilson), revenue per user (normal) and average order value '
    '(delta method); and for each variant but the control, each metric''s difference against the control '
    '(<metric>_vs_control, with _low, _high and _relative = difference / control value; null with fewer than two '
    'users on a side). tenant: the session''s tenant when null. Example: '
    'select variant, ctr, ctr_vs_control_low, ctr_vs_control_high from recs.experiment_report(experiment => ''home-v2'').';

-------------------------------------------------------------------------------------------------
-- Business rules (sql/062_rules.sql)
-------------------------------------------------------------------------------------------------

create or replace function recs.business_rules()
returns table (rule_id bigint, name text, kind text, placement text, item_id bigint, item_external_id text,
               item_title text, brand text, category text, min_margin numeric, factor real, "position" integer,
               starts_at timestamptz, ends_at timestamptz, enabled boolean, status text, created_at timestamptz,
               changed_at timestamptz, changed_by text)
language sql
stable parallel safe
as $$
    select * from pgrecs.business_rules()
$$;
comment on function recs.business_rules() is
    'Every business rule of the tenant with its item, state (live, scheduled, ended, disabled) and last change; live rules first.';

create or replace function recs.create_rule(
    name text,
    kind text,
    placement text default null,
    item text default null,
    brand text default null,
    category text default null,
    min_margin numeric default null,
    factor real default null,
    pin_position integer default null,
    starts_at timestamptz default null,
    ends_at timestamptz default null,
    enabled boolean default true
)
returns bigint
language sql
volatile
as $$
    select pgrecs.create_rule(create_rule.name, create_rule.kind, create_rule.placement, create_rule.item, create_rule.brand, create_rule.category, create_rule.min_margin, create_rule.factor, create_rule.pin_position, create_rule.starts_at, create_rule.ends_at, create_rule.enabled)
$$;
comment on function recs.create_rule(text, text, text, text, text, text, numeric, real, integer, timestamptz, timestamptz, boolean) is
    'Adds a business rule and returns its id: a boost (factor > 1 boosts, < 1 demotes), a pin (item at a position) or a block, '
    'matching an item (external id), a brand, a category (any level) and/or a minimum margin, for one placement or all (null), '
    'live inside [starts_at, ends_at) (a campaign). Example: select recs.create_rule(name => ''summer'', kind => ''boost'', '
    'brand => ''Acme'', factor => 1.5, ends_at => now() + interval ''7 days''); a pin: kind => ''pin'', item => ''SKU-1'', pin_position => 1.';

create or replace function recs.update_rule(
    rule_id bigint,
    name text,
    kind text,
    placement text default null,
    item text default null,
    brand text default null,
    category text default null,
    min_margin numeric default null,
    factor real default null,
    pin_position integer default null,
    starts_at timestamptz default null,
    ends_at timestamptz default null,
    enabled boolean default true
)
returns bigint
language sql
volatile
as $$
    select pgrecs.update_rule(update_rule.rule_id, update_rule.name, update_rule.kind, update_rule.placement, update_rule.item, update_rule.brand, update_rule.category, update_rule.min_margin, update_rule.factor, update_rule.pin_position, update_rule.starts_at, update_rule.ends_at, update_rule.enabled)
$$;
comment on function recs.update_rule(bigint, text, text, text, text, text, text, numeric, real, integer, timestamptz, timestamptz, boolean) is
    'Replaces every field of a business rule (same arguments as recs.create_rule); raises P0002 for an unknown rule.';

create or replace function recs.set_rule_enabled(rule_id bigint, enabled boolean)
returns boolean
language sql
volatile
as $$
    select pgrecs.set_rule_enabled(set_rule_enabled.rule_id, set_rule_enabled.enabled)
$$;
comment on function recs.set_rule_enabled(bigint, boolean) is
    'Enables or disables a business rule; true when it changed, false when it already was so (re-running is safe); P0002 for an unknown rule.';

create or replace function recs.business_rule_changes(rule_id bigint default null, n integer default 100)
returns table (change_id bigint, rule_id bigint, action text, actor text, changed_at timestamptz,
               old_row jsonb, new_row jsonb, changed_fields text[])
language sql
stable parallel safe
as $$
    select * from pgrecs.business_rule_changes(business_rule_changes.rule_id, business_rule_changes.n)
$$;
comment on function recs.business_rule_changes(bigint, integer) is
    'The audit trail of business rules, newest first: action, actor (console key or database user), time, old and new row and the fields that changed (set, for an insert or delete).';

create or replace function recs.rule_preview_contexts(
    item text default null,
    brand text default null,
    category text default null,
    n integer default 3
)
returns table (context_kind text, external_id text, title text)
language sql
stable parallel safe
as $$
    select * from pgrecs.rule_preview_contexts(rule_preview_contexts.item, rule_preview_contexts.brand, rule_preview_contexts.category, rule_preview_contexts.n)
$$;
comment on function recs.rule_preview_contexts(text, text, text, integer) is
    'Sample contexts for previewing a rule: items with a matching item high in a neighbour list and users with such items in their history (else the most popular items and most active recent users).';

-------------------------------------------------------------------------------------------------
-- Embedding decisions (sql/055_embed_decisions.sql)
-------------------------------------------------------------------------------------------------

create or replace function recs.embed_decision(item text)
returns table (external_id text, title text, embed_override boolean, rule_problem text, decision text,
               problem text)
language sql
stable parallel safe
as $$
    select * from pgrecs.embed_decision(embed_decision.item)
$$;
comment on function recs.embed_decision(text) is
    'Whether an item (external id) is embedded and why: the junk-text rule''s verdict (rule_problem), the merchant''s override and the resulting decision; problem is null when it is embedded. Empty when the item is unknown.';

create or replace function recs.set_embed_override(item text, embed boolean)
returns table (external_id text, title text, embed_override boolean, rule_problem text, decision text,
               problem text)
language sql
volatile
as $$
    select * from pgrecs.set_embed_override(set_embed_override.item, set_embed_override.embed)
$$;
comment on function recs.set_embed_override(text, boolean) is
    'The merchant''s embedding decision for an item (external id): embed => true embeds it whatever the junk-text rule says, false never embeds it, null hands it back to the rule. Queues the item for embedding; returns recs.embed_decision. Example: select * from recs.set_embed_override(item => ''22727'', embed => true).';

create or replace function recs.embed_overrides(n integer default 50)
returns table (external_id text, title text, embed_override boolean, rule_problem text)
language sql
stable parallel safe
as $$
    select * from pgrecs.embed_overrides(embed_overrides.n)
$$;
comment on function recs.embed_overrides(integer) is
    'The items whose embedding the merchant decided (embed_override set), with what the junk-text rule says of them.';

-------------------------------------------------------------------------------------------------
-- Merchant console reports (sql/066_console.sql)
-------------------------------------------------------------------------------------------------

create or replace function recs.catalog_overview()
returns table (items bigint, active_items bigint, in_stock_items bigint, embedded_items bigint,
               embedded_share double precision, embedding_model text, users bigint, events bigint,
               first_event_at timestamptz, last_event_at timestamptz, mean_quality_score double precision,
               rules_live bigint, placements bigint)
language sql
stable parallel safe
as $$
    select * from pgrecs.catalog_overview()
$$;
comment on function recs.catalog_overview() is
    'Catalog size (all, active, in stock), active items embedded by the default model and their share, users, events and their time span, mean quality score, live rules, placements.';

create or replace function recs.quality_histogram(bins integer default 10)
returns table (bin integer, low double precision, high double precision, items bigint)
language sql
stable parallel safe
as $$
    select * from pgrecs.quality_histogram(quality_histogram.bins)
$$;
comment on function recs.quality_histogram(integer) is
    'Items per quality-score bin (equal-width bins over [0, 1], a score of 1 in the last bin), from the published audit scores (pgrecs.item_signals).';

create or replace function recs.events_per_day(days integer default 30)
returns table (day date, event_type text, events bigint)
language sql
stable parallel safe
as $$
    select * from pgrecs.events_per_day(events_per_day.days)
$$;
comment on function recs.events_per_day(integer) is
    'Events per UTC day and type over the last `days` days up to the tenant''s latest event.';

create or replace function recs.placement_performance(days integer default 7)
returns table (placement text, requests bigint, served bigint, clicks bigint, purchases bigint,
               ctr double precision, conversion double precision, last_request_at timestamptz)
language sql
stable parallel safe
as $$
    select * from pgrecs.placement_performance(placement_performance.days)
$$;
comment on function recs.placement_performance(integer) is
    'Per placement over the last `days` days of served lists (pgrecs.recommendation_requests): requests, items served, '
    'clicks and purchases of listed items citing the request id, CTR (clicks per item served) and conversion '
    '(share of requests followed by such a purchase).';

create or replace function recs.exposure(days integer default 30)
returns table (requests bigint, active_items bigint, items_shown bigint, catalog_coverage double precision,
               exposures bigint, never_shown bigint, gini_items double precision, gini_brands double precision,
               gini_categories double precision, mean_popularity_percentile double precision,
               top_decile_share double precision, brands bigint, categories bigint)
language sql
stable parallel safe
as $$
    select * from pgrecs.exposure(exposure.days)
$$;
comment on function recs.exposure(integer) is
    'How exposure is spread over the active catalog in the lists served over the last `days` days: requests, items shown and the '
    'catalog share they are, item slots served, items never shown, Gini of exposure over items, brands and top-level categories '
    '(0 even, towards 1 concentrated), and popularity bias: the exposure-weighted mean popularity percentile of what was served '
    '(0.5 for an unbiased draw, 1 for only the most popular), the share of exposure going to the 10% most popular items, '
    'and how many brands and categories the active catalog has (a Gini over one group is 0).';

create or replace function recs.exposure_curve(days integer default 30, points integer default 20)
returns table (item_share double precision, exposure_share double precision)
language sql
stable parallel safe
as $$
    select * from pgrecs.exposure_curve(exposure_curve.days, exposure_curve.points)
$$;
comment on function recs.exposure_curve(integer, integer) is
    'The Lorenz curve of exposure over the active items in the lists served over the last `days` days, in about `points` steps: '
    'the least exposed item_share of the catalog received exposure_share of all exposure (the diagonal is perfectly even).';

create or replace function recs.exposure_by(dimension text default 'brand', days integer default 30, n integer default 20)
returns table (grp text, items bigint, exposures bigint, exposure_share double precision, catalog_share double precision)
language sql
stable parallel safe
as $$
    select * from pgrecs.exposure_by(exposure_by.dimension, exposure_by.days, exposure_by.n)
$$;
comment on function recs.exposure_by(text, integer, integer) is
    'Exposure per brand (dimension => ''brand'') or top-level category (any other value) over the last `days` days: active items, '
    'item slots served, share of all exposure and share of the catalog; the n most exposed.';

create or replace function recs.never_shown_items(days integer default 30, n integer default 20)
returns table (item_id bigint, external_id text, title text, brand text, popularity double precision)
language sql
stable parallel safe
as $$
    select * from pgrecs.never_shown_items(never_shown_items.days, never_shown_items.n)
$$;
comment on function recs.never_shown_items(integer, integer) is
    'Active items on no list served over the last `days` days, the most popular first.';

create or replace function recs.not_embeddable_items(n integer default 20)
returns table (item_id bigint, external_id text, title text, model text, reason text, recorded_at timestamptz)
language sql
stable parallel safe
as $$
    select * from pgrecs.not_embeddable_items(not_embeddable_items.n)
$$;
comment on function recs.not_embeddable_items(integer) is
    'Items whose text is too poor to embed, per model, with the reason (pgrecs.not_embeddable).';

create or replace function recs.item_details(item text)
returns table (item_id bigint, external_id text, title text, description text, brand text, category_path text[],
               attributes jsonb, price numeric, currency text, stock integer, margin numeric, image_url text,
               active boolean, created_at timestamptz, updated_at timestamptz, clean_title text,
               clean_description text, embedding_text text, text_problem text, popularity double precision,
               trending double precision, quality_score double precision, quality_flags text[], events bigint)
language sql
stable parallel safe
as $$
    select * from pgrecs.item_details(item_details.item)
$$;
comment on function recs.item_details(text) is
    'One item (external id) as stored and as cleaned: raw and cleaned title and description, the composed text embedded and why it would be refused, signals, quality and event count.';

create or replace function recs.item_embedding_status(item text)
returns table (model text, is_default boolean, status text, embedded_at timestamptz, truncated boolean,
               queued_at timestamptz, reason text)
language sql
stable parallel safe
as $$
    select * from pgrecs.item_embedding_status(item_embedding_status.item)
$$;
comment on function recs.item_embedding_status(text) is
    'Per embedding model, the state of one item''s embedding: current, stale (its text changed since), queued, missing or not embeddable (with the reason).';

create or replace function recs.experiments()
returns table (name text, description text, status text, started_at timestamptz, stopped_at timestamptz,
               variants jsonb)
language sql
stable parallel safe
as $$
    select * from pgrecs.experiments()
$$;
comment on function recs.experiments() is
    'The tenant''s experiments, running first, with their variants (placement, allocation, control).';

create or replace function recs.placements()
returns table (placement text, description text, weights jsonb, default_filters jsonb, fusion text,
               mmr_lambda real, max_per_brand integer, max_per_category integer, updated_at timestamptz)
language sql
stable parallel safe
as $$
    select * from pgrecs.placements()
$$;
comment on function recs.placements() is
    'The tenant''s placements with their signal weights, default filters, fusion, diversity and caps.';

-------------------------------------------------------------------------------------------------
-- One user, the catalog audit and the items to fix first
-------------------------------------------------------------------------------------------------

-- The audit marts (dbt, schema recs_marts) carry no row-level security: dbt rebuilds them. These
-- two read them as their owner for the tenant in pgrecs.tenant only, and return nothing when it
-- is unset or the marts were not built yet (`pgrecs refresh` builds them).
create or replace function recs.catalog_audit_summary()
returns jsonb
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    t text := nullif(current_setting('pgrecs.tenant', true), '');
    summary jsonb;
begin
    if t is null then
        return null;
    end if;
    select to_jsonb(a) - 'tenant_id' into summary
    from recs_marts.fct_catalog_audit_summary a
    where a.tenant_id = t;
    return summary;
exception when undefined_table then
    return null;
end
$$;
comment on function recs.catalog_audit_summary() is
    'The catalog audit (recs_marts.fct_catalog_audit_summary) of the tenant in pgrecs.tenant as one JSON object: counts of every finding, mean and 10th percentile quality; null when the tenant is unset or the audit was not built.';

create or replace function recs.catalog_audit_items(n integer default 20, flag text default null)
returns table (item_id bigint, external_id text, title text, quality_score numeric, quality_flags text[],
               same_title_items integer, nearest_item_id bigint, nearest_external_id text, nearest_title text,
               nearest_similarity double precision)
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    t text := nullif(current_setting('pgrecs.tenant', true), '');
begin
    if t is null then
        return;
    end if;
    return query
    select a.item_id, a.external_id, a.title, a.quality_score, a.quality_flags, a.same_title_items::integer,
           a.nearest_item_id, ni.external_id, ni.title, a.nearest_similarity::float8
    from recs_marts.fct_item_audit a
    left join pgrecs.items ni on ni.item_id = a.nearest_item_id and ni.tenant_id = t
    where a.tenant_id = t
      and (flag is null or flag = any(a.quality_flags))
    order by case when flag = 'near_duplicate_title' then -a.nearest_similarity end nulls last,
             case when flag = 'duplicate_title' then a.title end, a.quality_score, a.item_id
    limit n;
exception when undefined_table then
    return;
end
$$;
comment on function recs.catalog_audit_items(integer, text) is
    'The n lowest-quality items of the audit (recs_marts.fct_item_audit) of the tenant in pgrecs.tenant, with their flags, how many other items share their exact title, and the most similar other title; '
    'flag => ''near_duplicate_title'' (or any flag) keeps the items with that flag (duplicates ordered by similarity). Nothing when the tenant is unset or the audit was not built.';

revoke all on function recs.catalog_audit_summary() from public;
revoke all on function recs.catalog_audit_items(integer, text) from public;

create or replace function recs.user_history(user_id text, placement text default 'home_for_you')
returns table (recency_rank integer, item_id bigint, external_id text, title text, weight real, label text, purchased boolean)
language sql
stable parallel safe
as $$
    select h.recency_position, h.item_id, i.external_id, i.title, h.weight, h.label, h.purchased
    from pgrecs.users u
    cross join lateral pgrecs.user_history(u.user_id, user_history.placement)
        with ordinality as h (item_id, weight, label, purchased, recency_position, ord)
    join pgrecs.items i on i.item_id = h.item_id
    where u.tenant_id = pgrecs.current_tenant()
      and u.external_id = user_history.user_id
    order by h.ord
$$;
comment on function recs.user_history(text, text) is
    'A user''s history as the placement''s scorer reads it (pgrecs.user_history: event-type weights, recency decay, top items), most recent first, with titles.';
-- The items to fix first: those with an actionable audit finding, most traffic first, for the
-- audit report (`pgrecs audit`) and the console's catalog-health page. It reads the audit through
-- recs.catalog_audit_items (the tenant in pgrecs.tenant only), so it needs no privileges of its own.

create or replace function recs.catalog_fix_first(n integer default 20)
returns table (item_id bigint, external_id text, title text, quality_score numeric, quality_flags text[],
               events bigint)
language sql
stable
as $$
    with audited as (
        select a.item_id, a.external_id, a.title, a.quality_score,
               -- mojibake is repaired already: informational, nothing to fix
               array(select f from unnest(a.quality_flags) as f where f <> 'mojibake') as flags
        from recs.catalog_audit_items(n => 2147483647) a
    ),
    traffic as (
        select e.item_id, count(*) as events
        from pgrecs.events e
        where e.tenant_id = pgrecs.current_tenant()
        group by e.item_id
    )
    select a.item_id, a.external_id, a.title, a.quality_score, a.flags, coalesce(tr.events, 0)
    from audited a
    left join traffic tr on tr.item_id = a.item_id
    where cardinality(a.flags) > 0
    order by coalesce(tr.events, 0) desc, a.quality_score, a.item_id
    limit catalog_fix_first.n
$$;
comment on function recs.catalog_fix_first(integer) is
    'The n items of the tenant in pgrecs.tenant with an audit finding to fix (every flag but the repaired mojibake), ordered by their traffic (events), then lowest quality: where a fix reaches the most shoppers. Nothing when the tenant is unset or the audit was not built.';
