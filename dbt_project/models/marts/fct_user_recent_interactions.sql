-- Each user's most recent items (var user_history_items), weighted by event type and recency:
--   weight = sum over the user's events on the item of event weight * 0.5 ^ (age_days / var user_history_half_life_days)
-- Scoring reads live events at request time; this mart is the batch view of the same inputs
-- (evaluation, analysts, a fallback when the events table is large).
with

events as (

    select * from {{ ref('stg_pgrecs__events') }}
    where weight > 0

),

per_user_item as (

    select
        tenant_id,
        user_id,
        item_id,
        sum(weight * power(0.5, least(age_days / {{ var("user_history_half_life_days") | float }}, 100))) as weight,
        count(*) as interactions,
        max(weight) as strongest_event_weight,
        bool_or(event_type = 'purchase') as purchased,
        max(occurred_at) as last_at
    from events
    group by tenant_id, user_id, item_id

),

ranked as (

    select
        *,
        row_number() over (partition by tenant_id, user_id order by last_at desc, item_id desc) as recency_rank
    from per_user_item

),

final as (

    select *
    from ranked
    where recency_rank <= {{ var('user_history_items') | int }}

)

select * from final
