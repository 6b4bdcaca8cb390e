-- Per item with events: time-decayed popularity and the two trending windows.
--   popularity = sum over events of weight * 0.5 ^ (age_days / var popularity_half_life_days)
--   recent     = sum of weights in the last var trending_window_days
--   previous   = sum of weights in the window before that
--   trending   = (recent - previous) / sqrt(previous + 1): growth, damped for items with little
--                history so a jump from 0 to 1 does not outrank a jump from 100 to 300.
-- Computed from the daily rollup int_item_events_daily, not from the events: popularity as the
-- sum over days of the day's weight decayed to the day's end, decayed on to the reference time
-- (the same sum, regrouped; exponents are capped at 100 half-lives per day rather than per event,
-- a difference below 1e-30 of an event's weight). The trending windows take whole days from the
-- rollup; only the (at most two) days a window boundary falls inside are read from the events.
{%- set hl = var("popularity_half_life_days") | float %}
{%- set w = var('trending_window_days') | float %}
with

daily as (

    select * from {{ ref('int_item_events_daily') }}

),

reference as (

    select * from {{ ref('int_tenant_reference_times') }}

),

users as (

    -- users with a positive-weight interaction (cheaper than count(distinct) over raw events)
    select tenant_id, item_id, count(*) as users
    from {{ ref('int_user_items_aggregated') }}
    group by tenant_id, item_id

),

aged_days as (

    -- ages (in days) of the day's start and end; the day's events are older than end_age, at most start_age
    select
        daily.*,
        extract(epoch from reference.as_of - daily.day_end)::double precision / 86400.0 as end_age,
        extract(epoch from reference.as_of - (daily.day_end - interval '1 day'))::double precision / 86400.0 as start_age
    from daily
    inner join reference on reference.tenant_id = daily.tenant_id

),

classified as (

    select
        *,
        (end_age < {{ w }} and start_age >= {{ w }}) or (end_age < 2 * {{ w }} and start_age >= 2 * {{ w }}) as on_boundary
    from aged_days

),

boundary_days as materialized (

    select distinct tenant_id, day_end from classified where on_boundary

),

boundary_windows as (

    -- the boundary days' events, one by one (a BRIN range scan per day)
    select
        day_events.tenant_id,
        day_events.item_id,
        coalesce(sum(day_events.weight) filter (where day_events.age_days < {{ w }}), 0) as recent_weight,
        coalesce(sum(day_events.weight) filter (
            where day_events.age_days >= {{ w }} and day_events.age_days < 2 * {{ w }}
        ), 0) as previous_weight
    from boundary_days
    cross join lateral (
        select staged.*
        from {{ ref('stg_pgrecs__events') }} as staged
        where staged.tenant_id = boundary_days.tenant_id
            and staged.occurred_at >= boundary_days.day_end - interval '1 day'
            and staged.occurred_at < boundary_days.day_end
        offset 0  -- not flattened: the time range reaches the view, down to the BRIN index
    ) as day_events
    group by day_events.tenant_id, day_events.item_id

),

day_windows as (

    select
        tenant_id,
        item_id,
        sum(decayed_at_day_end * power(0.5, least(end_age / {{ hl }}, 100))) as popularity,
        coalesce(sum(weight_sum) filter (where not on_boundary and start_age < {{ w }}), 0) as recent_weight,
        coalesce(sum(weight_sum) filter (
            where not on_boundary and end_age >= {{ w }} and start_age < 2 * {{ w }}
        ), 0) as previous_weight,
        sum(events) as events,
        max(last_event_at) as last_event_at
    from classified
    group by tenant_id, item_id

),

per_item as (

    select
        day_windows.tenant_id,
        day_windows.item_id,
        day_windows.popularity,
        day_windows.recent_weight + coalesce(boundary_windows.recent_weight, 0) as recent_weight,
        day_windows.previous_weight + coalesce(boundary_windows.previous_weight, 0) as previous_weight,
        day_windows.events,
        day_windows.last_event_at
    from day_windows
    left join boundary_windows
        on boundary_windows.tenant_id = day_windows.tenant_id and boundary_windows.item_id = day_windows.item_id

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
