-- One row per exposed user and variant of every experiment (at least one impression attributed
-- to that variant): the unit of randomisation and of every interval in fct_experiment_variants.
-- Attribution is recs.experiment_user_outcomes (sql/060_experiments.sql), its one definition.
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
        variants.variant_id,
        experiments.tenant_id,
        outcomes.user_id,
        outcomes.impressions,
        outcomes.clicks,
        outcomes.add_to_carts,
        outcomes.purchases,
        outcomes.revenue,
        outcomes.request_attributed_events
    from experiments
    cross join lateral recs.experiment_user_outcomes(experiments.name, experiments.tenant_id) as outcomes
    inner join variants
        on variants.experiment_id = experiments.experiment_id
        and variants.name = outcomes.variant

)

select * from final
