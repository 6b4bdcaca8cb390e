-- Online experiments: deterministic assignment of users to variants and per-variant statistics.
-- This file is the one implementation of attribution, intervals and the difference against the
-- control: the dbt marts (models/marts/experiments), the CLI and the console only read it.
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

create or replace function pgrecs.assign_variant(experiment text, user_id text)
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
    where e.tenant_id = pgrecs.current_tenant()
      and e.name = assign_variant.experiment
      and e.status = 'running'
$$;
comment on function pgrecs.assign_variant(text, text) is
    'The body of recs.assign_variant (the public function, documented there).';

create or replace function pgrecs.request_uuid(request_key text)
returns uuid
language plpgsql
stable parallel safe
as $$
-- Only the canonical text of a uuid (what request_id::text gives), spaces trimmed: matching in
-- uuid keeps the text-equality rule of attribution while the primary key
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

-------------------------------------------------------------------------------------------------
-- Attribution and per-user outcomes
-------------------------------------------------------------------------------------------------

create or replace function pgrecs.experiment_user_outcomes(experiment text, tenant text default null)
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
    with exp as (
        select e.experiment_id, e.salt, e.started_at, coalesce(e.stopped_at, 'infinity'::timestamptz) as stopped_at, e.tenant_id
        from pgrecs.experiments e
        where e.tenant_id = coalesce(experiment_user_outcomes.tenant, pgrecs.current_tenant())
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
    -- attribution: the variant
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
               coalesce(served.variant_id, h.variant_id) as variant_id,
               served.variant_id is not null as by_request
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
               coalesce(sum(a.value) filter (where a.event_type = 'purchase'), 0)::float8 as revenue,
               count(*) filter (where a.by_request) as request_attributed_events
        from attributed a
        group by a.variant_id, a.user_id
    )
    select v.name, pu.user_id, pu.impressions, pu.clicks, pu.add_to_carts,
           pu.purchases, pu.revenue, pu.request_attributed_events
    from per_user pu
    join pgrecs.experiment_variants v on v.variant_id = pu.variant_id
    -- exposed users only: at least one recommendation impression attributed to the variant
    where pu.impressions > 0
$$;
comment on function pgrecs.experiment_user_outcomes(text, text) is
    'The body of recs.experiment_user_outcomes (the public function, documented there).';

-------------------------------------------------------------------------------------------------
-- Per-variant statistics and the difference against the control
-------------------------------------------------------------------------------------------------

create or replace function pgrecs.experiment_report(
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
    with o as (
        select o.*, v.experiment_id, v.variant_id
        from pgrecs.experiment_user_outcomes(experiment_report.experiment, experiment_report.tenant) as o
        join pgrecs.experiments as e
          on e.tenant_id = coalesce(experiment_report.tenant, pgrecs.current_tenant())
         and e.name = experiment_report.experiment
        join pgrecs.experiment_variants as v
          on v.experiment_id = e.experiment_id
         and v.name = o.variant
    ),
    agg as (
        select o.experiment_id, o.variant_id,
               count(*)::bigint as n,
               sum(o.impressions)::bigint as imp,
               sum(o.clicks)::bigint as clk,
               sum(o.add_to_carts)::bigint as atc,
               sum(o.purchases)::bigint as ord,
               sum(o.revenue) as rev,
               avg(o.impressions::float8) as m_imp,
               coalesce(var_samp(o.impressions::float8), 0) as v_imp,
               coalesce(var_samp(o.clicks::float8), 0) as v_clk,
               coalesce(covar_samp(o.clicks::float8, o.impressions::float8), 0) as c_clk_imp,
               avg((o.purchases > 0)::int::float8) as conv,
               coalesce(var_samp((o.purchases > 0)::int::float8), 0) as v_conv,
               avg(o.revenue) as rpu,
               avg(o.purchases::float8) as m_ord,
               coalesce(var_samp(o.purchases::float8), 0) as v_ord,
               coalesce(var_samp(o.revenue), 0) as v_rev,
               coalesce(covar_samp(o.revenue, o.purchases::float8), 0) as c_rev_ord
        from o
        group by o.experiment_id, o.variant_id
    ),
    ratios as (
        select a.*,
               a.clk::float8 / nullif(a.imp, 0) as r_ctr,
               a.rpu / nullif(a.m_ord, 0) as r_aov
        from agg a
    ),
    -- each estimate with its squared standard error; users are the unit of randomisation, so the
    -- ratios of per-user sums (CTR, AOV) take the delta method
    estimates as (
        select r.*,
               greatest(r.v_clk - 2 * r.r_ctr * r.c_clk_imp + r.r_ctr ^ 2 * r.v_imp, 0) / r.n / nullif(r.m_imp, 0) ^ 2 as se2_ctr,
               r.v_conv / r.n as se2_conv,
               r.v_rev / r.n as se2_rpu,
               greatest(r.v_rev - 2 * r.r_aov * r.c_rev_ord + r.r_aov ^ 2 * r.v_ord, 0) / r.n / nullif(r.m_ord, 0) ^ 2 as se2_aov
        from ratios r
    ),
    with_control as (
        select s.*, v.name as variant, v.placement, v.is_control, v.position,
               c.n as c_n, c.r_ctr as c_ctr, c.se2_ctr as c_se2_ctr, c.conv as c_conv, c.se2_conv as c_se2_conv,
               c.rpu as c_rpu, c.se2_rpu as c_se2_rpu, c.r_aov as c_aov, c.se2_aov as c_se2_aov,
               -- a difference needs two users on each side for its variance
               (not v.is_control and s.n >= 2 and c.n >= 2) as comparable
        from estimates s
        join pgrecs.experiment_variants v on v.variant_id = s.variant_id
        left join estimates c
          on c.variant_id = (select cv.variant_id from pgrecs.experiment_variants cv
                             where cv.experiment_id = s.experiment_id and cv.is_control)
    ),
    differences as (
        select w.*,
               case when w.comparable then w.r_ctr - w.c_ctr end as d_ctr,
               case when w.comparable then z * sqrt(w.se2_ctr + w.c_se2_ctr) end as m_ctr,
               case when w.comparable then w.conv - w.c_conv end as d_conv,
               case when w.comparable then z * sqrt(w.se2_conv + w.c_se2_conv) end as m_conv,
               case when w.comparable then w.rpu - w.c_rpu end as d_rpu,
               case when w.comparable then z * sqrt(w.se2_rpu + w.c_se2_rpu) end as m_rpu,
               case when w.comparable then w.r_aov - w.c_aov end as d_aov,
               case when w.comparable then z * sqrt(w.se2_aov + w.c_se2_aov) end as m_aov
        from with_control w
    )
    select d.variant, d.placement, d.is_control,
           d.n, d.imp, d.clk, d.atc, d.ord, d.rev,
           d.r_ctr, d.r_ctr - z * sqrt(d.se2_ctr), d.r_ctr + z * sqrt(d.se2_ctr),
           -- Wilson score interval
           d.conv,
           (d.conv + z ^ 2 / (2 * d.n) - z * sqrt(d.conv * (1 - d.conv) / d.n + z ^ 2 / (4 * d.n ^ 2))) / (1 + z ^ 2 / d.n),
           (d.conv + z ^ 2 / (2 * d.n) + z * sqrt(d.conv * (1 - d.conv) / d.n + z ^ 2 / (4 * d.n ^ 2))) / (1 + z ^ 2 / d.n),
           d.rpu, d.rpu - z * sqrt(d.se2_rpu), d.rpu + z * sqrt(d.se2_rpu),
           d.r_aov, d.r_aov - z * sqrt(d.se2_aov), d.r_aov + z * sqrt(d.se2_aov),
           d.d_ctr, d.d_ctr - d.m_ctr, d.d_ctr + d.m_ctr, d.d_ctr / nullif(d.c_ctr, 0),
           d.d_conv, d.d_conv - d.m_conv, d.d_conv + d.m_conv, d.d_conv / nullif(d.c_conv, 0),
           d.d_rpu, d.d_rpu - d.m_rpu, d.d_rpu + d.m_rpu, d.d_rpu / nullif(d.c_rpu, 0),
           d.d_aov, d.d_aov - d.m_aov, d.d_aov + d.m_aov, d.d_aov / nullif(d.c_aov, 0)
    from differences d
    order by d.position
$$;
comment on function pgrecs.experiment_report(text, double precision, text) is
    'The body of recs.experiment_report (the public function, documented there).';
