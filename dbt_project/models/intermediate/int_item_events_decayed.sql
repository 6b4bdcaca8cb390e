{{ config(pre_hook=["set work_mem = '256MB'"], post_hook=["reset work_mem"]) }}
-- Per item with events: time-decayed popularity and the two trending windows.
--   popularity = sum over events of weight * 0.5 ^ (age_days / var popularity_half_life_days)
--   recent     = sum of weights in the last var trending_window_days
--   previous   = sum of weights in the window before that
--   trending   = (recent - previous) / sqrt(previous + 1): growth, damped for items with little
--                history so a jump from 0 to 1 does not outrank a jump from 100 to 300.
-- Computed from the rollups, not from the events: popularity as the sum over months
-- (int_item_events_monthly) of the month's weight decayed to the month's end, decayed on to the
-- reference time (the same sum, regrouped; exponents are capped at 100 half-lives per day and per
-- month rather than per event, a difference below 1e-30 of an event's weight). The trending
-- windows take whole days from the daily rollup (only the days inside the two windows are read,
-- from its (tenant_id, day) index); only the (at most two) days a window boundary falls inside are
-- read from the events.
{%- set hl = var("popularity_half_life_days") | float %}
{%- set w = var('trending_window_days') | float %}
with

monthly as (

    select * from {{ ref('int_item_events_monthly') }}

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

boundary_days as materialized (

    -- per tenant, the (at most two) days a trending-window boundary (reference time minus one or
    -- two windows) falls inside: day_start <= as_of - window < day_end
    select distinct
        reference.tenant_id,
        (date_trunc('day', (reference.as_of - make_interval(secs => windows.k * {{ w }} * 86400)) at time zone 'UTC')
            + interval '1 day') at time zone 'UTC' as day_end
    from reference
    cross join (values (1), (2)) as windows (k)

),

daily as (

    -- the days inside the two trending windows: day >= the day holding as_of - 2 windows (older
    -- days end at least two windows before the reference time)
    select window_days.*
    from reference
    cross join lateral (
        select daily.*
        from {{ ref('int_item_events_daily') }} as daily
        where daily.tenant_id = reference.tenant_id
            and daily.day >= ((reference.as_of - make_interval(secs => 2 * {{ w }} * 86400)) at time zone 'UTC')::date
        offset 0  -- one index range scan per tenant
    ) as window_days

),

days as (

    -- per tenant and day: ages (in days) of the day's start and end (the day's events are older
    -- than end_age, at most start_age) and whether a window boundary falls inside it; computed
    -- once per day, not per item and day
    select
        days.tenant_id,
        days.day_end,
        ages.end_age,
        ages.start_age,
        boundary_days.day_end is not null as on_boundary
    from (select distinct tenant_id, day_end from daily) as days
    inner join reference on reference.tenant_id = days.tenant_id
    cross join lateral (
        select
            extract(epoch from reference.as_of - days.day_end)::double precision / 86400.0 as end_age,
            extract(epoch from reference.as_of - (days.day_end - interval '1 day'))::double precision / 86400.0 as start_age
    ) as ages
    left join boundary_days
        on boundary_days.tenant_id = days.tenant_id and boundary_days.day_end = days.day_end

),

classified as (

    select daily.*, days.end_age, days.start_age, days.on_boundary
    from daily
    inner join days on days.tenant_id = daily.tenant_id and days.day_end = daily.day_end

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
        coalesce(sum(weight_sum) filter (where not on_boundary and start_age < {{ w }}), 0) as recent_weight,
        coalesce(sum(weight_sum) filter (
            where not on_boundary and end_age >= {{ w }} and start_age < 2 * {{ w }}
        ), 0) as previous_weight
    from classified
    group by tenant_id, item_id

),

month_totals as (

    select
        monthly.tenant_id,
        monthly.item_id,
        -- in month order, so the float sum is the same on every run
        sum(monthly.decayed_at_month_end * power(0.5, least(
            extract(epoch from reference.as_of - monthly.month_end)::double precision / 86400.0 / {{ hl }},
            100)) order by monthly.month) as popularity,
        sum(monthly.events) as events,
        max(monthly.last_event_at) as last_event_at
    from monthly
    inner join reference on reference.tenant_id = monthly.tenant_id
    group by monthly.tenant_id, monthly.item_id

),

per_item as (

    select
        month_totals.tenant_id,
        month_totals.item_id,
        month_totals.popularity,
        coalesce(day_windows.recent_weight, 0) + coalesce(boundary_windows.recent_weight, 0) as recent_weight,
        coalesce(day_windows.previous_weight, 0) + coalesce(boundary_windows.previous_weight, 0) as previous_weight,
        month_totals.events,
        month_totals.last_event_at
    from month_totals
    left join day_windows
        on day_windows.tenant_id = month_totals.tenant_id and day_windows.item_id = month_totals.item_id
    left join boundary_windows
        on boundary_windows.tenant_id = month_totals.tenant_id and boundary_windows.item_id = month_totals.item_id

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
