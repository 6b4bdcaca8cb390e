{{ config(post_hook=["analyze {{ this }}"]) }}
-- Analyzed after each build, so that the planner knows it holds one row per tenant.
-- The reference time of each tenant with events: var as_of, or the tenant's latest event (read
-- from the daily rollup, not from the event log). Popularity and the user histories decay to it.
with

daily as (

    select * from {{ ref('int_item_events_daily') }}

),

final as (

    select
        tenant_id,
        {{ as_of_expr('max(last_event_at)') }} as as_of
    from daily
    group by tenant_id

)

select * from final
