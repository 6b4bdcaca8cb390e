{{ config(
    materialized='incremental' if events_incremental_ok() else 'table',
    incremental_strategy='delete+insert',
    unique_key=['tenant_id', 'day'],
    pre_hook=["set work_mem = '256MB'"],
    post_hook=[
        "reset work_mem",
        "{{ index_once('tenant_id, last_event_id') }}",
        "{{ index_once('tenant_id, day') }}",
        "{% if not is_incremental() %}analyze {{ this }}{% endif %}",
    ],
) }}
-- Per item and UTC day: the events' summed weight, their count, and their weight decayed to the
-- end of the day, so that popularity (int_item_events_decayed) is a sum over days instead of over
-- events:
--   decayed_at_day_end = sum of weight * 0.5 ^ ((day_end - occurred_at) / var popularity_half_life_days)
--   popularity = sum over days of decayed_at_day_end * 0.5 ^ ((as_of - day_end) / half-life)
-- Incremental: a run rebuilds every (tenant, day) that holds an event newer than the model's
-- high-water mark, from that day's events (the BRIN index on occurred_at), so a day of new events
-- costs a day of reading, not the whole log.
with

{%- if is_incremental() %}

new_days as materialized (

    {{ new_events_sql("new_events.tenant_id, date_trunc('day', new_events.occurred_at at time zone 'UTC') as day") }}

),

events as (

    select day_events.*
    from new_days
    cross join lateral (
        select staged.*
        from {{ ref('stg_pgrecs__events') }} as staged
        where staged.tenant_id = new_days.tenant_id
            and staged.occurred_at >= new_days.day at time zone 'UTC'
            and staged.occurred_at < (new_days.day + interval '1 day') at time zone 'UTC'
        offset 0  -- not flattened: the time range reaches the view, down to the BRIN index
    ) as day_events

),
{%- else %}

events as (

    select * from {{ ref('stg_pgrecs__events') }}

),
{%- endif %}

bucketed as (

    select
        *,
        date_trunc('day', occurred_at at time zone 'UTC') as day,
        (date_trunc('day', occurred_at at time zone 'UTC') + interval '1 day') at time zone 'UTC' as day_end
    from events

),

final as (

    select
        tenant_id,
        item_id,
        day::date as day,
        min(day_end) as day_end,
        sum(weight) as weight_sum,
        sum(weight * power(0.5, extract(epoch from day_end - occurred_at)::double precision / 86400.0
            / {{ var("popularity_half_life_days") | float }})) as decayed_at_day_end,
        count(*) as events,
        max(occurred_at) as last_event_at,
        max(event_id) as last_event_id
    from bucketed
    group by tenant_id, item_id, day

)

select * from final
