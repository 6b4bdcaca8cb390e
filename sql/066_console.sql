-- What a merchant reads: catalog, quality, traffic, placement performance, exposure, one item,
-- one user. The merchant console (pgrecs.console) renders these; analysts call them the same way.
-- All read the tenant's rows under row-level security like every recs function. Time windows
-- that describe past behaviour end at the tenant's latest event (a replayed or paused shop still
-- shows its last weeks); windows over served lists end now.

create or replace function pgrecs.gini(x double precision[])
returns double precision
language sql
immutable parallel safe
as $$
    -- G = sum_i (2i - n - 1) x_(i) / (n sum x), values sorted ascending; 0 = equal, 1 = one takes all
    select case when s.total > 0 then sum((2 * s.i - s.n - 1) * s.v) / (s.n * s.total) end
    from (
        select u.v, row_number() over (order by u.v) as i, count(*) over () as n, sum(u.v) over () as total
        from unnest(x) as u (v)
    ) s
    group by s.n, s.total
$$;
comment on function pgrecs.gini(double precision[]) is
    'Gini coefficient of non-negative values (0: all equal, towards 1: one value takes all); null for no values or a zero sum.';

create or replace function recs.catalog_overview()
returns table (items bigint, active_items bigint, in_stock_items bigint, embedded_items bigint,
               embedded_share double precision, embedding_model text, users bigint, events bigint,
               first_event_at timestamptz, last_event_at timestamptz, mean_quality_score double precision,
               rules_live bigint, placements bigint)
language sql
stable parallel safe
as $$
    with m as (
        select model_id, name from pgrecs.embedding_models where is_default
    ),
    i as (
        select count(*) as items,
               count(*) filter (where it.active) as active_items,
               count(*) filter (where it.active and coalesce(it.stock, 1) > 0) as in_stock_items,
               count(*) filter (where it.active and exists (
                   select 1 from pgrecs.item_embeddings e join m on m.model_id = e.model_id
                   where e.item_id = it.item_id)) as embedded_items
        from pgrecs.items it
        where it.tenant_id = pgrecs.current_tenant()
    ),
    e as (
        select count(*) as events, min(ev.occurred_at) as first_at, max(ev.occurred_at) as last_at
        from pgrecs.events ev
        where ev.tenant_id = pgrecs.current_tenant()
    )
    select i.items, i.active_items, i.in_stock_items, i.embedded_items,
           i.embedded_items::float8 / nullif(i.active_items, 0), (select m.name from m),
           (select count(*) from pgrecs.users u where u.tenant_id = pgrecs.current_tenant()),
           e.events, e.first_at, e.last_at,
           (select avg(s.quality_score)::float8 from pgrecs.item_signals s where s.tenant_id = pgrecs.current_tenant()),
           (select count(*) from pgrecs.business_rules r
            where r.tenant_id = pgrecs.current_tenant() and pgrecs.rule_status(r, now()) = 'live'),
           (select count(*) from pgrecs.placements p where p.tenant_id = pgrecs.current_tenant())
    from i, e
$$;
comment on function recs.catalog_overview() is
    'Catalog size (all, active, in stock), active items embedded by the default model and their share, users, events and their time span, mean quality score, live rules, placements.';

create or replace function recs.quality_histogram(bins integer default 10)
returns table (bin integer, low double precision, high double precision, items bigint)
language sql
stable parallel safe
as $$
    select b.bin, (b.bin - 1)::float8 / bins, b.bin::float8 / bins, count(s.item_id)
    from generate_series(1, greatest(bins, 1)) as b (bin)
    left join pgrecs.item_signals s
      on s.tenant_id = pgrecs.current_tenant()
     and s.quality_score is not null
     and least(width_bucket(s.quality_score, 0, 1, greatest(bins, 1)), greatest(bins, 1)) = b.bin
    group by b.bin
    order by b.bin
$$;
comment on function recs.quality_histogram(integer) is
    'Items per quality-score bin (equal-width bins over [0, 1], a score of 1 in the last bin), from the published audit scores (pgrecs.item_signals).';

create or replace function recs.events_per_day(days integer default 30)
returns table (day date, event_type text, events bigint)
language sql
stable parallel safe
as $$
    with last as (
        select max(e.occurred_at) as at from pgrecs.events e where e.tenant_id = pgrecs.current_tenant()
    )
    select (e.occurred_at at time zone 'UTC')::date, e.event_type, count(*)
    from pgrecs.events e, last
    where e.tenant_id = pgrecs.current_tenant()
      and e.occurred_at > last.at - make_interval(days => events_per_day.days)
    group by 1, 2
    order by 1, 2
$$;
comment on function recs.events_per_day(integer) is
    'Events per UTC day and type over the last `days` days up to the tenant''s latest event.';

create or replace function recs.placement_performance(days integer default 7)
returns table (placement text, requests bigint, served bigint, clicks bigint, purchases bigint,
               ctr double precision, conversion double precision, last_request_at timestamptz)
language sql
stable parallel safe
as $$
    -- an event counts for a served list when it cites the list's request id and its item was on it;
    -- each list finds its events through events_request (tenant, request id), a few index probes
    -- instead of a pass over the whole event log
    with outcomes as (
        select rr.placement,
               count(*) as requests,
               sum(cardinality(rr.item_ids)) as served,
               sum(o.clicks) as clicks,
               sum(o.purchases) as purchases,
               count(*) filter (where o.purchases > 0) as converted,
               max(rr.created_at) as last_request_at
        from pgrecs.recommendation_requests rr
        cross join lateral (
            select count(*) filter (where e.event_type = 'click') as clicks,
                   count(*) filter (where e.event_type = 'purchase') as purchases
            from pgrecs.events e
            where e.tenant_id = pgrecs.current_tenant()
              and e.request_id = rr.request_id::text
              and e.item_id = any(rr.item_ids)
        ) o
        where rr.tenant_id = pgrecs.current_tenant()
          and rr.created_at > now() - make_interval(days => placement_performance.days)
        group by rr.placement
    )
    select p.placement,
           coalesce(o.requests, 0)::bigint,
           coalesce(o.served, 0)::bigint,
           coalesce(o.clicks, 0)::bigint,
           coalesce(o.purchases, 0)::bigint,
           coalesce(o.clicks, 0)::float8 / nullif(o.served, 0),
           o.converted::float8 / nullif(o.requests, 0),
           o.last_request_at
    from pgrecs.placements p
    left join outcomes o on o.placement = p.placement
    where p.tenant_id = pgrecs.current_tenant()
    order by coalesce(o.requests, 0) desc, p.placement
$$;
comment on function recs.placement_performance(integer) is
    'Per placement over the last `days` days of served lists (pgrecs.recommendation_requests): requests, items served, '
    'clicks and purchases of listed items citing the request id, CTR (clicks per item served) and conversion '
    '(share of requests followed by such a purchase).';

create or replace function pgrecs.served_item_counts(days integer)
returns table (item_id bigint, n bigint)
language sql
stable parallel safe
as $$
    select x.item_id, count(*)
    from pgrecs.recommendation_requests rr
    cross join unnest(rr.item_ids) as x (item_id)
    where rr.tenant_id = pgrecs.current_tenant()
      and rr.created_at > now() - make_interval(days => served_item_counts.days)
    group by x.item_id
$$;
comment on function pgrecs.served_item_counts(integer) is
    'How many times each item was on a list served over the last `days` days (pgrecs.recommendation_requests).';

create or replace function recs.exposure(days integer default 30)
returns table (requests bigint, active_items bigint, items_shown bigint, catalog_coverage double precision,
               exposures bigint, never_shown bigint, gini_items double precision, gini_brands double precision,
               gini_categories double precision, mean_popularity_percentile double precision,
               top_decile_share double precision, brands bigint, categories bigint)
language sql
stable parallel safe
as $$
    with catalog as (
        select i.item_id, i.brand, i.category_path[1] as category, coalesce(sh.n, 0)::float8 as n,
               -- 1 = the most popular active item, 0 = the least (items without popularity count as 0)
               percent_rank() over (order by coalesce(s.popularity, 0)) as pop_pct
        from pgrecs.items i
        left join pgrecs.served_item_counts(exposure.days) sh on sh.item_id = i.item_id
        left join pgrecs.item_signals s on s.item_id = i.item_id
        where i.tenant_id = pgrecs.current_tenant()
          and i.active
    )
    select (select count(*) from pgrecs.recommendation_requests rr
            where rr.tenant_id = pgrecs.current_tenant() and rr.created_at > now() - make_interval(days => exposure.days)),
           count(*),
           count(*) filter (where c.n > 0),
           count(*) filter (where c.n > 0)::float8 / nullif(count(*), 0),
           sum(c.n)::bigint,
           count(*) filter (where c.n = 0),
           pgrecs.gini(array_agg(c.n)),
           (select pgrecs.gini(array_agg(g.n)) from (select sum(c2.n) as n from catalog c2 group by coalesce(c2.brand, '')) g),
           (select pgrecs.gini(array_agg(g.n)) from (select sum(c2.n) as n from catalog c2 group by coalesce(c2.category, '')) g),
           sum(c.n * c.pop_pct) / nullif(sum(c.n), 0),
           sum(c.n) filter (where c.pop_pct >= 0.9) / nullif(sum(c.n), 0),
           count(distinct c.brand),
           count(distinct c.category)
    from catalog c
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
    -- the Lorenz curve of exposure over active items: the least exposed x% of items get y% of it
    with counts as (
        select coalesce(sh.n, 0)::float8 as n
        from pgrecs.items i
        left join pgrecs.served_item_counts(exposure_curve.days) sh on sh.item_id = i.item_id
        where i.tenant_id = pgrecs.current_tenant()
          and i.active
    ),
    ranked as (
        select row_number() over (order by c.n) as i, count(*) over () as total_items,
               sum(c.n) over (order by c.n rows unbounded preceding) as cumulative, sum(c.n) over () as total
        from counts c
    )
    select 0::float8, 0::float8
    union all
    select r.i::float8 / r.total_items, r.cumulative / nullif(r.total, 0)
    from ranked r
    where r.i % greatest(r.total_items / greatest(exposure_curve.points, 1), 1) = 0 or r.i = r.total_items
    order by 1
$$;
comment on function recs.exposure_curve(integer, integer) is
    'The Lorenz curve of exposure over the active items in the lists served over the last `days` days, in about `points` steps: '
    'the least exposed item_share of the catalog received exposure_share of all exposure (the diagonal is perfectly even).';

create or replace function recs.exposure_by(dimension text default 'brand', days integer default 30, n integer default 20)
returns table (grp text, items bigint, exposures bigint, exposure_share double precision, catalog_share double precision)
language sql
stable parallel safe
as $$
    with catalog as (
        select case dimension when 'brand' then coalesce(i.brand, '(no brand)')
                              else coalesce(i.category_path[1], '(no category)') end as grp,
               coalesce(sh.n, 0) as n
        from pgrecs.items i
        left join pgrecs.served_item_counts(exposure_by.days) sh on sh.item_id = i.item_id
        where i.tenant_id = pgrecs.current_tenant()
          and i.active
    )
    select c.grp, count(*), sum(c.n)::bigint,
           sum(c.n)::float8 / nullif(sum(sum(c.n)) over (), 0),
           count(*)::float8 / sum(count(*)) over ()
    from catalog c
    group by c.grp
    order by sum(c.n) desc, count(*) desc, c.grp
    limit exposure_by.n
$$;
comment on function recs.exposure_by(text, integer, integer) is
    'Exposure per brand (dimension => ''brand'') or top-level category (any other value) over the last `days` days: active items, '
    'item slots served, share of all exposure and share of the catalog; the n most exposed.';

create or replace function recs.never_shown_items(days integer default 30, n integer default 20)
returns table (item_id bigint, external_id text, title text, brand text, popularity double precision)
language sql
stable parallel safe
as $$
    select i.item_id, i.external_id, i.title, i.brand, s.popularity::float8
    from pgrecs.items i
    left join pgrecs.item_signals s on s.item_id = i.item_id
    where i.tenant_id = pgrecs.current_tenant()
      and i.active
      and not exists (select 1 from pgrecs.served_item_counts(never_shown_items.days) sh where sh.item_id = i.item_id)
    order by s.popularity desc nulls last, i.item_id
    limit never_shown_items.n
$$;
comment on function recs.never_shown_items(integer, integer) is
    'Active items on no list served over the last `days` days, the most popular first.';

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

create or replace function recs.not_embeddable_items(n integer default 20)
returns table (item_id bigint, external_id text, title text, model text, reason text, recorded_at timestamptz)
language sql
stable parallel safe
as $$
    select i.item_id, i.external_id, i.title, m.name, ne.reason, ne.recorded_at
    from pgrecs.not_embeddable ne
    join pgrecs.items i on i.item_id = ne.item_id
    join pgrecs.embedding_models m on m.model_id = ne.model_id
    where ne.tenant_id = pgrecs.current_tenant()
    order by ne.reason, i.item_id
    limit not_embeddable_items.n
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
    select i.item_id, i.external_id, i.title, i.description, i.brand, i.category_path, i.attributes, i.price,
           i.currency, i.stock, i.margin, i.image_url, i.active, i.created_at, i.updated_at,
           pgrecs.clean_text(i.title), pgrecs.clean_description(i.description), x.composed,
           pgrecs.item_embed_problem(x.composed, i.embed_override), s.popularity::float8, s.trending::float8,
           s.quality_score::float8, s.quality_flags,
           (select count(*) from pgrecs.events e where e.tenant_id = i.tenant_id and e.item_id = i.item_id)
    from pgrecs.items i
    cross join lateral (
        select pgrecs.compose_item_text(i.title, i.description, i.brand, i.category_path, i.attributes) as composed
    ) x
    left join pgrecs.item_signals s on s.item_id = i.item_id
    where i.tenant_id = pgrecs.current_tenant()
      and i.external_id = item_details.item
$$;
comment on function recs.item_details(text) is
    'One item (external id) as stored and as cleaned: raw and cleaned title and description, the composed text embedded and why it would be refused, signals, quality and event count.';

create or replace function recs.item_embedding_status(item text)
returns table (model text, is_default boolean, status text, embedded_at timestamptz, truncated boolean,
               queued_at timestamptz, reason text)
language sql
stable parallel safe
as $$
    select m.name, m.is_default,
           case when ne.reason is not null then 'not embeddable'
                when e.item_id is null and q.item_id is not null then 'queued'
                when e.item_id is null then 'missing'
                when e.text_sha256 <> pgrecs.item_text_sha256(
                         pgrecs.compose_item_text(i.title, i.description, i.brand, i.category_path, i.attributes))
                    then 'stale'
                when q.item_id is not null then 'queued'
                else 'current' end,
           e.embedded_at, e.truncated, q.enqueued_at, ne.reason
    from pgrecs.items i
    cross join pgrecs.embedding_models m
    left join pgrecs.item_embeddings e on e.item_id = i.item_id and e.model_id = m.model_id
    left join pgrecs.embedding_queue q on q.item_id = i.item_id and q.model_id = m.model_id
    left join pgrecs.not_embeddable ne on ne.item_id = i.item_id and ne.model_id = m.model_id
    where i.tenant_id = pgrecs.current_tenant()
      and i.external_id = item_embedding_status.item
    order by m.is_default desc, m.name
$$;
comment on function recs.item_embedding_status(text) is
    'Per embedding model, the state of one item''s embedding: current, stale (its text changed since), queued, missing or not embeddable (with the reason).';

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

create or replace function recs.experiments()
returns table (name text, description text, status text, started_at timestamptz, stopped_at timestamptz,
               variants jsonb)
language sql
stable parallel safe
as $$
    select e.name, e.description, e.status, e.started_at, e.stopped_at,
           coalesce((select jsonb_agg(jsonb_build_object('variant', v.name, 'placement', v.placement,
                                                         'allocation', v.allocation, 'is_control', v.is_control)
                                      order by v.position)
                     from pgrecs.experiment_variants v where v.experiment_id = e.experiment_id), '[]')
    from pgrecs.experiments e
    where e.tenant_id = pgrecs.current_tenant()
    order by e.status = 'running' desc, e.started_at desc
$$;
comment on function recs.experiments() is
    'The tenant''s experiments, running first, with their variants (placement, allocation, control).';

create or replace function recs.placements()
returns table (placement text, description text, weights jsonb, default_filters jsonb, fusion text,
               mmr_lambda real, max_per_brand integer, max_per_category integer, updated_at timestamptz)
language sql
stable parallel safe
as $$
    select p.placement, p.description, p.weights, p.default_filters, p.fusion, p.mmr_lambda, p.max_per_brand,
           p.max_per_category, p.updated_at
    from pgrecs.placements p
    where p.tenant_id = pgrecs.current_tenant()
    order by p.placement
$$;
comment on function recs.placements() is
    'The tenant''s placements with their signal weights, default filters, fusion, diversity and caps.';
