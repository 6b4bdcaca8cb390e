-- Serving one HTTP request in SQL: rank it by external ids (pgrecs.rank_request), log the served
-- list (pgrecs.log_recommendations), or both in one call (pgrecs.serve_recommendations, the API's
-- one round trip on the primary). The bodies of the recs.* functions of the same names
-- (sql/069_recs.sql); they call the recs.recommend_* functions, which plpgsql resolves when run.

create or replace function pgrecs.endpoint_placement(endpoint text, placement text default null)
returns text
language sql
immutable parallel safe
as $$
    select coalesce(placement, case endpoint
        when 'item' then 'pdp_similar' when 'user' then 'home_for_you' when 'examples' then 'more_like_these' end)
$$;
comment on function pgrecs.endpoint_placement(text, text) is
    'The placement a request is ranked and logged under: the one asked for, else the endpoint''s default '
    '(item: pdp_similar, user: home_for_you, examples: more_like_these).';

create or replace function pgrecs.rank_request(
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
language plpgsql stable parallel safe
as $$
declare
    v_placement text := pgrecs.endpoint_placement(rank_request.endpoint, rank_request.placement);
begin
    if endpoint = 'item' then
        return query select * from recs.recommend_for_item(
            item => rank_request.item, k => rank_request.k,
            placement => v_placement,
            filters => rank_request.filters, explain => rank_request.explain);
    elsif endpoint = 'user' then
        return query select * from recs.recommend_for_user(
            user_id => rank_request.user_id, k => rank_request.k,
            placement => v_placement,
            filters => rank_request.filters, explain => rank_request.explain);
    elsif endpoint = 'examples' then
        return query select * from recs.recommend(
            examples => rank_request.examples, negative_examples => rank_request.negative_examples,
            k => rank_request.k, placement => v_placement,
            filters => rank_request.filters, explain => rank_request.explain);
    else
        raise exception 'unknown endpoint: %', endpoint using errcode = '22023';
    end if;
end
$$;
comment on function pgrecs.rank_request(text, integer, text, jsonb, boolean, text, text, text[], text[]) is
    'The body of recs.rank_request (sql/069_recs.sql), whose comment documents it.';

create or replace function pgrecs.log_recommendations(
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
language plpgsql volatile
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
comment on function pgrecs.log_recommendations(uuid, text, text, integer, jsonb, text, text[], bigint[], real[]) is
    'The body of recs.log_recommendations (sql/069_recs.sql), whose comment documents it.';

create or replace function pgrecs.serve_recommendations(
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
language plpgsql volatile
as $$
#variable_conflict use_column
declare
    r record;
    v_items bigint[] := '{}';
    v_scores real[] := '{}';
    v_placement text := pgrecs.endpoint_placement(serve_recommendations.endpoint, serve_recommendations.placement);
begin
    for r in
        select * from pgrecs.rank_request(serve_recommendations.endpoint, serve_recommendations.k, v_placement,
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
    perform pgrecs.log_recommendations(
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
comment on function pgrecs.serve_recommendations(uuid, text, integer, text, jsonb, boolean, text, text, text[], text[]) is
    'The body of recs.serve_recommendations (sql/069_recs.sql), whose comment documents it.';
