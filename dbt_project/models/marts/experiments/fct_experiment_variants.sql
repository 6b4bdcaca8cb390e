-- Per-variant CTR, conversion, revenue per user and average order value with confidence
-- intervals (z = var experiment_z, default 1.959964 for 95%). Users are the unit:
--   CTR = clicks / impressions and AOV = revenue / orders are ratios of per-user sums, with
--   delta-method intervals; conversion (share of users with a purchase) has a Wilson interval;
--   revenue per user has a normal interval. Identical formulas to recs.experiment_report.
with

outcomes as (

    select * from {{ ref('fct_experiment_user_outcomes') }}

),

variants as (

    select * from {{ source('pgrecs_experiments', 'experiment_variants') }}

),

experiments as (

    select * from {{ source('pgrecs_experiments', 'experiments') }}

),

aggregated as (

    select
        experiment_id,
        variant_id,
        count(*)::bigint as n,
        sum(impressions)::bigint as impressions,
        sum(clicks)::bigint as clicks,
        sum(add_to_carts)::bigint as add_to_carts,
        sum(purchases)::bigint as orders,
        sum(revenue) as revenue,
        avg(impressions::float8) as mean_impressions,
        avg(clicks::float8) as mean_clicks,
        coalesce(var_samp(impressions::float8), 0) as var_impressions,
        coalesce(var_samp(clicks::float8), 0) as var_clicks,
        coalesce(covar_samp(clicks::float8, impressions::float8), 0) as cov_clicks_impressions,
        avg((purchases > 0)::int::float8) as conversion,
        avg(revenue) as revenue_per_user,
        coalesce(stddev_samp(revenue), 0) as sd_revenue,
        avg(purchases::float8) as mean_orders,
        coalesce(var_samp(purchases::float8), 0) as var_orders,
        coalesce(var_samp(revenue), 0) as var_revenue,
        coalesce(covar_samp(revenue, purchases::float8), 0) as cov_revenue_orders
    from outcomes
    group by experiment_id, variant_id

),

ratios as (

    select
        aggregated.*,
        {{ var('experiment_z', 1.959964) }}::float8 as z,
        clicks::float8 / nullif(impressions, 0) as ctr,
        revenue_per_user / nullif(mean_orders, 0) as average_order_value
    from aggregated

),

intervals as (

    select
        ratios.*,
        z * sqrt(greatest(var_clicks - 2 * ctr * cov_clicks_impressions + ctr ^ 2 * var_impressions, 0) / n)
            / nullif(mean_impressions, 0) as ctr_margin,
        z * sqrt(greatest(var_revenue - 2 * average_order_value * cov_revenue_orders
            + average_order_value ^ 2 * var_orders, 0) / n) / nullif(mean_orders, 0) as aov_margin,
        z * sd_revenue / sqrt(n) as rpu_margin,
        (conversion + z ^ 2 / (2 * n)) / (1 + z ^ 2 / n) as wilson_centre,
        z * sqrt(conversion * (1 - conversion) / n + z ^ 2 / (4 * n ^ 2)) / (1 + z ^ 2 / n) as wilson_margin
    from ratios

),

final as (

    select
        intervals.experiment_id,
        experiments.name as experiment_name,
        intervals.variant_id,
        variants.name as variant,
        variants.placement,
        variants.is_control,
        variants.position,
        experiments.tenant_id,
        intervals.n as users,
        intervals.impressions,
        intervals.clicks,
        intervals.add_to_carts,
        intervals.orders,
        intervals.revenue,
        intervals.ctr,
        intervals.ctr - intervals.ctr_margin as ctr_low,
        intervals.ctr + intervals.ctr_margin as ctr_high,
        intervals.conversion,
        intervals.wilson_centre - intervals.wilson_margin as conversion_low,
        intervals.wilson_centre + intervals.wilson_margin as conversion_high,
        intervals.revenue_per_user,
        intervals.revenue_per_user - intervals.rpu_margin as revenue_per_user_low,
        intervals.revenue_per_user + intervals.rpu_margin as revenue_per_user_high,
        intervals.average_order_value,
        intervals.average_order_value - intervals.aov_margin as average_order_value_low,
        intervals.average_order_value + intervals.aov_margin as average_order_value_high,
        intervals.z
    from intervals
    inner join variants on variants.variant_id = intervals.variant_id
    inner join experiments on experiments.experiment_id = intervals.experiment_id

)

select * from final
