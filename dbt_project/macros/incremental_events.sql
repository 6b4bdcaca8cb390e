{#- Event-level models are incremental on event_id: a run reads only the events newer than the
    model's own high-water mark (max last_event_id per tenant) and rebuilds the rows of the users
    those events belong to. Only sound while no event drops out of scope between runs, so a fixed
    var as_of or a sliding var event_window_days turns it off (the models are then plain tables). -#}
{% macro events_incremental_ok() -%}
    {{- return(var('as_of') is none and var('event_window_days') is none) -}}
{%- endmacro %}

{#- Users with events newer than this model's high-water mark (an incremental run only). -#}
{% macro changed_users_sql(events_relation) -%}
    select distinct new_events.tenant_id, new_events.user_id
    from {{ events_relation }} as new_events
    where new_events.event_id > coalesce(
        (select max(done.last_event_id) from {{ this }} as done where done.tenant_id = new_events.tenant_id), 0)
{%- endmacro %}
