-- One row per exposed user and variant of each experiment (at least one impression attributed
-- to that variant): the unit of randomisation and of every interval in fct_experiment_variants.
with

attributed as (

    select * from {{ ref('int_experiment_events_attributed') }}

),

per_user as (

    select
        experiment_id,
        variant_id,
        tenant_id,
        user_id,
        count(*) filter (where event_type = 'impression') as impressions,
        count(*) filter (where event_type = 'click') as clicks,
        count(*) filter (where event_type = 'add_to_cart') as add_to_carts,
        count(*) filter (where event_type = 'purchase') as purchases,
        coalesce(sum(value) filter (where event_type = 'purchase'), 0)::float8 as revenue,
        count(*) filter (where attributed_by = 'request') as request_attributed_events
    from attributed
    group by experiment_id, variant_id, tenant_id, user_id

),

final as (

    select *
    from per_user
    where impressions > 0

)

select * from final
