-- Per-variant results of every experiment with confidence intervals at z = var experiment_z
-- (default 1.959964 for 95%) and each metric's difference against the control. The statistics
-- are recs.experiment_report (sql/060_experiments.sql), their one implementation; this mart
-- keeps them as a table for every tenant's experiments at once.
with

experiments as (

    select * from {{ source('pgrecs_experiments', 'experiments') }}

),

variants as (

    select * from {{ source('pgrecs_experiments', 'experiment_variants') }}

),

final as (

    select
        experiments.experiment_id,
        experiments.name as experiment_name,
        variants.variant_id,
        report.variant,
        report.placement,
        report.is_control,
        experiments.tenant_id,
        report.users,
        report.impressions,
        report.clicks,
        report.add_to_carts,
        report.orders,
        report.revenue,
        report.ctr,
        report.ctr_low,
        report.ctr_high,
        report.conversion,
        report.conversion_low,
        report.conversion_high,
        report.revenue_per_user,
        report.revenue_per_user_low,
        report.revenue_per_user_high,
        report.average_order_value,
        report.average_order_value_low,
        report.average_order_value_high,
        report.ctr_vs_control,
        report.ctr_vs_control_low,
        report.ctr_vs_control_high,
        report.conversion_vs_control,
        report.conversion_vs_control_low,
        report.conversion_vs_control_high,
        report.revenue_per_user_vs_control,
        report.revenue_per_user_vs_control_low,
        report.revenue_per_user_vs_control_high,
        report.average_order_value_vs_control,
        report.average_order_value_vs_control_low,
        report.average_order_value_vs_control_high,
        {{ var('experiment_z', 1.959964) }}::float8 as z
    from experiments
    cross join lateral recs.experiment_report(
        experiments.name, {{ var('experiment_z', 1.959964) }}::float8, experiments.tenant_id
    ) as report
    inner join variants
        on variants.experiment_id = experiments.experiment_id
        and variants.name = report.variant

)

select * from final
