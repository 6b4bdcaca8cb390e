-- Per item with events: time-decayed popularity and the two trending windows.
--   popularity = sum over events of weight * 0.5 ^ (age_days / var popularity_half_life_days)
--   recent     = sum of weights in the last var trending_window_days
--   previous   = sum of weights in the window before that
--   trending   = (recent - previous) / sqrt(previous + 1): growth, damped for items with little
--                history so a jump from 0 to 1 does not outrank a jump from 100 to 300.
with

events as (

    select * from {{ ref('stg_pgrecs__events') }}

),

users as (

    -- users with a positive-weight interaction (cheaper than count(distinct) over raw events)
    select tenant_id, item_id, count(*) as users
    from {{ ref('int_user_items_aggregated') }}
    group by tenant_id, item_id

),

per_item as (

    select
        tenant_id,
        item_id,
        sum(weight * power(0.5, least(age_days / {{ var("popularity_half_life_days") | float }}, 100))) as popularity,
        coalesce(sum(weight) filter (where age_days < {{ var('trending_window_days') | float }}), 0) as recent_weight,
        coalesce(sum(weight) filter (
            where age_days >= {{ var('trending_window_days') | float }}
            and age_days < 2 * {{ var('trending_window_days') | float }}
        ), 0) as previous_weight,
        count(*) as events,
        max(occurred_at) as last_event_at
    from events
    group by tenant_id, item_id

),

final as (

    select
        per_item.*,
        coalesce(users.users, 0) as users,
        (per_item.recent_weight - per_item.previous_weight) / sqrt(per_item.previous_weight + 1) as trending
    from per_item
    left join users on users.tenant_id = per_item.tenant_id and users.item_id = per_item.item_id

)

select * from final
