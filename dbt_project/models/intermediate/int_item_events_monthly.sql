{{ config(
    materialized='incremental' if events_incremental_ok() else 'table',
    incremental_strategy='delete+insert',
    unique_key=['tenant_id', 'month'],
    post_hook=[
        "{{ index_once('tenant_id, last_event_id') }}",
        "{{ index_once('tenant_id, month') }}",
        "{% if not is_incremental() %}analyze {{ this }}{% endif %}",
    ],
) }}
-- Per item and UTC calendar month: the month's days from int_item_events_daily, their decayed
-- weight carried on to the month's end, so that popularity (int_item_events_decayed) is a sum over
-- months instead of over days:
--   decayed_at_month_end = sum over the month's days of decayed_at_day_end * 0.5 ^ ((month_end - day_end) / var popularity_half_life_days)
-- Incremental: a run rebuilds every (tenant, month) holding a day the daily rollup rebuilt since
-- this model's high-water mark (max last_event_id), from that month's days (the (tenant_id, day) index).
{%- set hl = var("popularity_half_life_days") | float %}
with

{%- if is_incremental() %}

changed_months as materialized (

    {{ rows_after_mark_sql(ref('int_item_events_daily'), "changed.tenant_id, date_trunc('month', changed.day::timestamp)::date as month") }}

),

daily as (

    select month_days.*
    from changed_months
    cross join lateral (
        select daily.*
        from {{ ref('int_item_events_daily') }} as daily
        where daily.tenant_id = changed_months.tenant_id
            and daily.day >= changed_months.month
            and daily.day < (changed_months.month + interval '1 month')::date
        offset 0  -- one index range scan per month
    ) as month_days

),
{%- else %}

daily as (

    select * from {{ ref('int_item_events_daily') }}

),
{%- endif %}

bucketed as (

    select
        *,
        date_trunc('month', day::timestamp)::date as month,
        (date_trunc('month', day::timestamp) + interval '1 month') at time zone 'UTC' as month_end
    from daily

),

final as (

    select
        tenant_id,
        item_id,
        month,
        min(month_end) as month_end,
        -- summed in day order: a float sum depends on the order of its terms, and a parallel
        -- plan would otherwise split the days between workers differently on every run
        sum(decayed_at_day_end * power(0.5, least(
            extract(epoch from month_end - day_end)::double precision / 86400.0 / {{ hl }}, 100))
            order by day) as decayed_at_month_end,
        sum(events) as events,
        max(last_event_at) as last_event_at,
        max(last_event_id) as last_event_id
    from bucketed
    group by tenant_id, item_id, month

)

select * from final
