{#- Event-level models are incremental on event_id: a run reads only the events newer than the
    model's own high-water mark (max last_event_id per tenant) and rebuilds the rows of the users
    those events belong to. Only sound while no event drops out of scope between runs, so a fixed
    var as_of or a sliding var event_window_days turns it off (the models are then plain tables). -#}
{% macro events_incremental_ok() -%}
    {{- return(var('as_of') is none and var('event_window_days') is none) -}}
{%- endmacro %}

{#- Users with events newer than this model's high-water mark (an incremental run only): the mark
    is read once per tenant, then the events after it come from the primary-key index. -#}
{% macro changed_users_sql(events_relation) -%}
    select distinct new_events.tenant_id, new_events.user_id
    from {{ source('pgrecs', 'tenants') }} as tenants
    cross join lateral (
        select coalesce(max(done.last_event_id), 0) as last_event_id
        from {{ this }} as done
        where done.tenant_id = tenants.tenant_id
    ) as mark
    inner join {{ source('pgrecs', 'events') }} as new_events
        on new_events.tenant_id = tenants.tenant_id
        and new_events.event_id > mark.last_event_id
{%- endmacro %}
