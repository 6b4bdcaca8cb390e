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

create or replace function pgrecs.catalog_overview()
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
comment on function pgrecs.catalog_overview() is
    'The body of recs.catalog_overview (the public function, documented there).';

create or replace function pgrecs.quality_histogram(bins integer default 10)
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
comment on function pgrecs.quality_histogram(integer) is
    'The body of recs.quality_histogram (the public function, documented there).';

create or replace function pgrecs.events_per_day(days integer default 30)
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
comment on function pgrecs.events_per_day(integer) is
    'The body of recs.events_per_day (the public function, documented there).';

create or replace function pgrecs.placement_performance(days integer default 7)
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
comment on function pgrecs.placement_performance(integer) is
    'The body of recs.placement_performance (the public function, documented there).';

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

create or replace function pgrecs.exposure(days integer default 30)
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
comment on function pgrecs.exposure(integer) is
    'The body of recs.exposure (the public function, documented there).';

create or replace function pgrecs.exposure_curve(days integer default 30, points integer default 20)
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
comment on function pgrecs.exposure_curve(integer, integer) is
    'The body of recs.exposure_curve (the public function, documented there).';

create or replace function pgrecs.exposure_by(dimension text default 'brand', days integer default 30, n integer default 20)
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
comment on function pgrecs.exposure_by(text, integer, integer) is
    'The body of recs.exposure_by (the public function, documented there).';

create or replace function pgrecs.never_shown_items(days integer default 30, n integer default 20)
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
comment on function pgrecs.never_shown_items(integer, integer) is
    'The body of recs.never_shown_items (the public function, documented there).';

create or replace function pgrecs.not_embeddable_items(n integer default 20)
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
comment on function pgrecs.not_embeddable_items(integer) is
    'The body of recs.not_embeddable_items (the public function, documented there).';

create or replace function pgrecs.item_details(item text)
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
comment on function pgrecs.item_details(text) is
    'The body of recs.item_details (the public function, documented there).';

create or replace function pgrecs.item_embedding_status(item text)
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
comment on function pgrecs.item_embedding_status(text) is
    'The body of recs.item_embedding_status (the public function, documented there).';

create or replace function pgrecs.experiments()
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
comment on function pgrecs.experiments() is
    'The body of recs.experiments (the public function, documented there).';

create or replace function pgrecs.placements()
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
comment on function pgrecs.placements() is
    'The body of recs.placements (the public function, documented there).';
