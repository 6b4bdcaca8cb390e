{{ config(materialized="view") }}
-- Events with their weight, inside the time window (var event_window_days, relative to var as_of
-- or the tenant's latest event). Events of weight 0 (impressions by default) are kept with weight 0.
-- A view: the event-level models read it incrementally (only the new events' users), so copying
-- every event into a table per run would cost more than it saves.
with

events as (

    select * from {{ source('pgrecs', 'events') }}

),

event_types as (

    select * from {{ ref('stg_pgrecs__event_types') }}

),

reference as materialized (

    {{ reference_times_sql() }}

),

final as (

    select
        events.event_id,
        events.tenant_id,
        events.user_id,
        events.item_id,
        events.event_type,
        event_types.weight,
        events.value,
        events.occurred_at,
        reference.as_of,
        extract(epoch from reference.as_of - events.occurred_at)::double precision / 86400.0 as age_days,
        nullif(btrim(events.session_id), '') as session_id,
        events.request_id
    from events
    inner join event_types on event_types.event_type = events.event_type
    inner join reference on reference.tenant_id = events.tenant_id
    where events.occurred_at <= reference.as_of
    {%- if var('event_window_days') is not none %}
        and events.occurred_at > reference.as_of - make_interval(days => {{ var('event_window_days') | int }})
    {%- endif %}

)

select * from final
