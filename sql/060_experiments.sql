-- Online experiments: deterministic assignment of users to variants and per-variant statistics.
--
-- Assignment hashes md5(salt || ':' || user external id) into a bucket in [0, 1) and walks the
-- variants in `position` order, each taking a share of [0, 1) proportional to its allocation.
-- No state is stored, a user never changes variant while the variants are unchanged, and any
-- client can reproduce it (Python: int(md5(f"{salt}:{user}").hexdigest()[:8], 16) / 2**32).

create or replace function pgrecs.hash_bucket(salt text, user_key text)
returns double precision
language sql
immutable parallel safe
as $$
    select ('x' || substr(md5(salt || ':' || user_key), 1, 8))::bit(32)::bigint / 4294967296.0
$$;
comment on function pgrecs.hash_bucket(text, text) is
    'Uniform bucket in [0, 1) from md5(salt:user_key); the basis of experiment assignment.';

create or replace function pgrecs.variant_for_bucket(experiment_id bigint, bucket double precision)
returns bigint
language sql
stable parallel safe
as $$
    with shares as (
        select v.variant_id,
               sum(v.allocation) over (order by v.position) / sum(v.allocation) over () as upper_bound
        from pgrecs.experiment_variants v
        where v.experiment_id = variant_for_bucket.experiment_id
    )
    select s.variant_id
    from shares s
    where s.upper_bound > variant_for_bucket.bucket
    order by s.upper_bound
    limit 1
$$;
comment on function pgrecs.variant_for_bucket(bigint, double precision) is
    'The variant whose cumulative allocation window contains the bucket.';

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
    select e.name,
           v.name,
           v.placement,
           v.is_control,
           pgrecs.hash_bucket(e.salt, assign_variant.user_id)
    from pgrecs.experiments e
    join pgrecs.experiment_variants v
      on v.variant_id = pgrecs.variant_for_bucket(e.experiment_id, pgrecs.hash_bucket(e.salt, assign_variant.user_id))
    where e.tenant_id = coalesce(nullif(current_setting('pgrecs.tenant', true), ''), 'default')
      and e.name = assign_variant.experiment
      and e.status = 'running'
$$;
comment on function recs.assign_variant(text, text) is
    'Deterministic variant (and the placement to serve) for a user external id in a running experiment; '
    'no row when the experiment is unknown or not running. Example: '
    'select * from recs.assign_variant(experiment => ''home-v2'', user_id => ''u42'').';

create or replace function pgrecs.request_uuid(request_key text)
returns uuid
language plpgsql
stable parallel safe
as $$
-- Only the canonical text of a uuid (what request_id::text gives), spaces trimmed: matching in
-- uuid keeps the text-equality rule of int_experiment_events_attributed while the primary key
-- serves the lookup, and any other text (a client's own id) names no served list instead of
-- failing the cast. No regular expression (a counted-repetition regex cost ~15 us a row); and
-- plpgsql, not sql: inlined, the planner would fold the cast of a constant argument before the
-- validity test could stop it. Stable, not immutable: pg_input_is_valid is.
declare
    trimmed text := btrim(request_key);
begin
    if pg_catalog.pg_input_is_valid(trimmed, 'uuid') then
        if trimmed::uuid::text = trimmed then
            return trimmed::uuid;
        end if;
    end if;
    return null;
end
$$;
comment on function pgrecs.request_uuid(text) is
    'The served list id an event''s request_id names (canonical uuid text, spaces trimmed), or null for any other text.';

create or replace function recs.experiment_user_outcomes(experiment text)
returns table (
    variant text,
    user_id bigint,
    impressions bigint,
    clicks bigint,
    add_to_carts bigint,
    purchases bigint,
    revenue double precision
)
language sql
stable parallel safe
as $$
    with exp as (
        select e.experiment_id, e.salt, e.started_at, coalesce(e.stopped_at, 'infinity'::timestamptz) as stopped_at, e.tenant_id
        from pgrecs.experiments e
        where e.tenant_id = coalesce(nullif(current_setting('pgrecs.tenant', true), ''), 'default')
          and e.name = experiment_user_outcomes.experiment
    ),
    window_events as (
        select ev.user_id, ev.event_type, ev.value,
               pgrecs.request_uuid(ev.request_id) as request_id
        from exp
        join pgrecs.events ev
          on ev.tenant_id = exp.tenant_id
         and ev.occurred_at >= exp.started_at
         and ev.occurred_at < exp.stopped_at
    ),
    -- the hashed variant once per user, not once per event (materialized: inlined, the planner
    -- would evaluate it again for every event in every sort and group key)
    hashed as materialized (
        select u.user_id,
               pgrecs.variant_for_bucket(exp.experiment_id, pgrecs.hash_bucket(exp.salt, u.external_id)) as variant_id
        from exp
        join pgrecs.users u
          on u.user_id in (select we.user_id from window_events we)
    ),
    -- attribution (same rule as the dbt model int_experiment_events_attributed): the variant
    -- serving the placement of the cited recommendation request, else the user's hashed variant;
    -- looked up once per cited request and hashed variant, not once per event
    cited as materialized (
        select distinct we.request_id, h.variant_id as hash_variant_id
        from window_events we
        join hashed h on h.user_id = we.user_id
        where we.request_id is not null
    ),
    served as materialized (
        select c.request_id, c.hash_variant_id, chosen.variant_id
        from cited c
        cross join lateral (
            select v.variant_id
            from exp
            join pgrecs.recommendation_requests rr
              on rr.request_id = c.request_id
             and rr.tenant_id = exp.tenant_id
            join pgrecs.experiment_variants v
              on v.experiment_id = exp.experiment_id
             and v.placement = rr.placement
            order by (v.variant_id = c.hash_variant_id) desc, v.position
            limit 1
        ) chosen
    ),
    attributed as (
        select we.user_id, we.event_type, we.value,
               coalesce(served.variant_id, h.variant_id) as variant_id
        from window_events we
        join hashed h on h.user_id = we.user_id
        left join served
          on served.request_id = we.request_id
         and served.hash_variant_id = h.variant_id
    ),
    per_user as (
        select a.variant_id, a.user_id,
               count(*) filter (where a.event_type = 'impression') as impressions,
               count(*) filter (where a.event_type = 'click') as clicks,
               count(*) filter (where a.event_type = 'add_to_cart') as add_to_carts,
               count(*) filter (where a.event_type = 'purchase') as purchases,
               coalesce(sum(a.value) filter (where a.event_type = 'purchase'), 0)::float8 as revenue
        from attributed a
        group by a.variant_id, a.user_id
    )
    select v.name, pu.user_id, pu.impressions, pu.clicks, pu.add_to_carts, pu.purchases, pu.revenue
    from per_user pu
    join pgrecs.experiment_variants v on v.variant_id = pu.variant_id
    -- exposed users only: at least one recommendation impression attributed to the variant
    where pu.impressions > 0
$$;
comment on function recs.experiment_user_outcomes(text) is
    'One row per exposed user and variant (an impression inside the experiment window attributed to the variant) with '
    'outcome counts. An event counts for the variant serving the placement of its request_id '
    '(pgrecs.recommendation_requests) when known, else for the user''s hashed variant.';

create or replace function recs.experiment_report(experiment text, z double precision default 1.959964)
returns table (
    variant text,
    placement text,
    is_control boolean,
    users bigint,
    impressions bigint,
    clicks bigint,
    ctr double precision,
    ctr_low double precision,
    ctr_high double precision,
    conversion double precision,
    conversion_low double precision,
    conversion_high double precision,
    revenue_per_user double precision,
    revenue_per_user_low double precision,
    revenue_per_user_high double precision,
    orders bigint,
    average_order_value double precision,
    average_order_value_low double precision,
    average_order_value_high double precision
)
language sql
stable parallel safe
as $$
    with o as (
        select * from recs.experiment_user_outcomes(experiment_report.experiment)
    ),
    agg as (
        select o.variant,
               count(*)::bigint as n,
               sum(o.impressions)::bigint as imp,
               sum(o.clicks)::bigint as clk,
               sum(o.purchases)::bigint as ord,
               avg(o.impressions::float8) as m_imp,
               avg(o.clicks::float8) as m_clk,
               coalesce(var_samp(o.impressions::float8), 0) as v_imp,
               coalesce(var_samp(o.clicks::float8), 0) as v_clk,
               coalesce(covar_samp(o.clicks::float8, o.impressions::float8), 0) as c_clk_imp,
               avg((o.purchases > 0)::int::float8) as conv,
               avg(o.revenue) as rpu,
               coalesce(stddev_samp(o.revenue), 0) as sd_rev,
               avg(o.purchases::float8) as m_ord,
               coalesce(var_samp(o.purchases::float8), 0) as v_ord,
               coalesce(var_samp(o.revenue), 0) as v_rev,
               coalesce(covar_samp(o.revenue, o.purchases::float8), 0) as c_rev_ord
        from o
        group by o.variant
    ),
    stats as (
        select a.*,
               a.clk::float8 / nullif(a.imp, 0) as r_ctr,
               (a.rpu / nullif(a.m_ord, 0)) as r_aov
        from agg a
    ),
    final as (
        select s.variant,
               v.placement,
               v.is_control,
               v.position,
               s.n as users,
               s.imp as impressions,
               s.clk as clicks,
               s.r_ctr as ctr,
               -- ratio of per-user sums: delta method, so users (not impressions) are the unit of randomisation
               s.r_ctr - z * sqrt(greatest(s.v_clk - 2 * s.r_ctr * s.c_clk_imp + s.r_ctr ^ 2 * s.v_imp, 0) / s.n) / nullif(s.m_imp, 0) as ctr_low,
               s.r_ctr + z * sqrt(greatest(s.v_clk - 2 * s.r_ctr * s.c_clk_imp + s.r_ctr ^ 2 * s.v_imp, 0) / s.n) / nullif(s.m_imp, 0) as ctr_high,
               s.conv as conversion,
               -- Wilson score interval
               (s.conv + z ^ 2 / (2 * s.n) - z * sqrt(s.conv * (1 - s.conv) / s.n + z ^ 2 / (4 * s.n ^ 2))) / (1 + z ^ 2 / s.n) as conversion_low,
               (s.conv + z ^ 2 / (2 * s.n) + z * sqrt(s.conv * (1 - s.conv) / s.n + z ^ 2 / (4 * s.n ^ 2))) / (1 + z ^ 2 / s.n) as conversion_high,
               s.rpu as revenue_per_user,
               s.rpu - z * s.sd_rev / sqrt(s.n) as revenue_per_user_low,
               s.rpu + z * s.sd_rev / sqrt(s.n) as revenue_per_user_high,
               s.ord as orders,
               s.r_aov as average_order_value,
               s.r_aov - z * sqrt(greatest(s.v_rev - 2 * s.r_aov * s.c_rev_ord + s.r_aov ^ 2 * s.v_ord, 0) / s.n) / nullif(s.m_ord, 0) as average_order_value_low,
               s.r_aov + z * sqrt(greatest(s.v_rev - 2 * s.r_aov * s.c_rev_ord + s.r_aov ^ 2 * s.v_ord, 0) / s.n) / nullif(s.m_ord, 0) as average_order_value_high
        from stats s
        join pgrecs.experiments e
          on e.tenant_id = coalesce(nullif(current_setting('pgrecs.tenant', true), ''), 'default')
         and e.name = experiment_report.experiment
        join pgrecs.experiment_variants v
          on v.experiment_id = e.experiment_id
         and v.name = s.variant
    )
    select f.variant, f.placement, f.is_control, f.users, f.impressions, f.clicks,
           f.ctr, f.ctr_low, f.ctr_high,
           f.conversion, f.conversion_low, f.conversion_high,
           f.revenue_per_user, f.revenue_per_user_low, f.revenue_per_user_high,
           f.orders, f.average_order_value, f.average_order_value_low, f.average_order_value_high
    from final f
    order by f.position
$$;
comment on function recs.experiment_report(text, double precision) is
    'Per-variant CTR (delta-method CI over users), conversion (Wilson CI), revenue per user and average '
    'order value (delta-method CI) for exposed users; z = 1.96 gives 95% intervals.';
