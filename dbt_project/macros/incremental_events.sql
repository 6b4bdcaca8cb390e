{#- Event-level models are incremental on event_id: a run reads only the events newer than the
    model's own high-water mark (max last_event_id per tenant, from an index) and rebuilds the rows
    those events belong to. Only sound while no event drops out of scope between runs, so a fixed
    var as_of or a sliding var event_window_days turns it off (the models are then plain tables).
    The vars the stored rows depend on (event weights, half-lives, session weight, basket cap) are
    fingerprinted by `pgrecs refresh`, which runs a full refresh when one of them changes. -#}
{% macro events_incremental_ok() -%}
    {{- return(var('as_of') is none and var('event_window_days') is none) -}}
{%- endmacro %}

{#- Every tenant with this model's high-water mark (`mark.last_event_id`, 0 before the first row),
    read from the model's (tenant_id, last_event_id) index. -#}
{% macro tenant_marks_sql() -%}
from {{ source('pgrecs', 'tenants') }} as tenants
    cross join lateral (
        select coalesce(max(done.last_event_id), 0) as last_event_id
        from {{ this }} as done
        where done.tenant_id = tenants.tenant_id
    ) as mark
{%- endmacro %}

{#- Per tenant, the events newer than this model's high-water mark (an incremental run only). The
    mark is read per tenant from the (tenant_id, last_event_id) index, the events after it from
    the primary key: no scan of the model or of the event log. -#}
{% macro new_events_sql(columns='new_events.tenant_id, new_events.user_id') -%}
    select distinct {{ columns }}
    {{ tenant_marks_sql() }}
    cross join lateral (
        select e.*
        from {{ source('pgrecs', 'events') }} as e
        where e.event_id > mark.last_event_id
            and e.tenant_id = tenants.tenant_id
        offset 0  -- keeps the subquery (and its primary-key range scan) per tenant
    ) as new_events
{%- endmacro %}

{#- Users with events newer than this model's high-water mark. -#}
{% macro changed_users_sql(events_relation=none) -%}
    {{ new_events_sql() }}
{%- endmacro %}

{#- All staged events of the given users (a relation or CTE with tenant_id, user_id), one index
    lookup per user (events_user_time) instead of a join over the whole event log. A view built
    from CTEs is never flattened into a join, so the filter must reach it through a LATERAL
    subquery that is itself kept (offset 0). -#}
{% macro events_of_users_sql(users) -%}
    select user_events.*
    from {{ users }} as scope_users
    cross join lateral (
        select staged.*
        from {{ ref('stg_pgrecs__events') }} as staged
        where staged.tenant_id = scope_users.tenant_id
            and staged.user_id = scope_users.user_id
        offset 0  -- not flattened: the user filter is pushed into the view, down to the index
    ) as user_events
{%- endmacro %}

{#- Post-hook: an index on this model, created when the table is (re)built and left alone by
    incremental runs. Unnamed on purpose: when dbt rebuilds a table it first renames the old one
    to <name>__dbt_backup, which keeps its indexes' names until it is dropped after the commit, so
    `create index if not exists <fixed name>` would find the backup's index and skip the new table. -#}
{% macro index_once(columns) -%}
    {%- if not is_incremental() -%}create index on {{ this }} ({{ columns }}){%- else -%}select 1{%- endif -%}
{%- endmacro %}

{#- Per tenant, the staged events (weights applied) newer than this model's high-water mark: the
    mark from the (tenant_id, last_event_id) index, the events after it from the primary key
    through stg_pgrecs__events (the event_id filter reaches the view's scan of the event log). -#}
{% macro new_staged_events_sql() -%}
    select new_events.*
    {{ tenant_marks_sql() }}
    cross join lateral (
        select staged.*
        from {{ ref('stg_pgrecs__events') }} as staged
        where staged.event_id > mark.last_event_id
            and staged.tenant_id = tenants.tenant_id
        offset 0  -- not flattened: the id range reaches the view, down to the primary key
    ) as new_events
{%- endmacro %}

{#- The rows of an upstream relation rebuilt since this model's high-water mark (rows whose
    last_event_id is newer), read per tenant through the upstream's (tenant_id, last_event_id) index. -#}
{% macro rows_after_mark_sql(upstream, columns) -%}
    select distinct {{ columns }}
    {{ tenant_marks_sql() }}
    cross join lateral (
        select changed.*
        from {{ upstream }} as changed
        where changed.tenant_id = tenants.tenant_id
            and changed.last_event_id > mark.last_event_id
        offset 0
    ) as changed
{%- endmacro %}
