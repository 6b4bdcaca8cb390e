{{ config(post_hook="create index if not exists {{ this.name }}_item on {{ this }} (tenant_id, item_id)") }}
-- One row per user and item with a positive total event weight: the interaction matrix that the
-- co-occurrence baskets and EASE are built from.
with

events as (

    select * from {{ ref('stg_pgrecs__events') }}
    where weight > 0

),

final as (

    select
        tenant_id,
        user_id,
        item_id,
        sum(weight) as weight_sum,
        count(*) as interactions,
        min(occurred_at) as first_at,
        max(occurred_at) as last_at,
        max(event_id) as last_event_id
    from events
    group by tenant_id, user_id, item_id

)

select * from final
