{#- The reference time per tenant: var('as_of') or the tenant's latest event. -#}
{% macro as_of_expr(latest_column) -%}
    {%- if var('as_of') is not none -%}'{{ var("as_of") }}'::timestamptz{%- else -%}{{ latest_column }}{%- endif -%}
{%- endmacro %}

{#- Leaf category key of an item (null when it has none). -#}
{% macro leaf_category(path_column) -%}
    {{ path_column }}[cardinality({{ path_column }})]
{%- endmacro %}

{#- One row per tenant with events, with its reference time (var as_of or the tenant's latest
    event). The latest event is one lookup per tenant in the index events_tenant_time_utc (on
    tenant_id and the UTC wall-clock time, which user-history scans cannot match), not a scan of
    the event log: every model and test reading stg_pgrecs__events computes it. -#}
{% macro reference_times_sql() -%}
    select
        tenants.tenant_id,
        {{ as_of_expr('latest.occurred_at') }} as as_of
    from {{ source('pgrecs', 'tenants') }} as tenants
    cross join lateral (
        select max(e.occurred_at at time zone 'UTC') at time zone 'UTC' as occurred_at
        from {{ source('pgrecs', 'events') }} as e
        where e.tenant_id = tenants.tenant_id
    ) as latest
    where latest.occurred_at is not null
{%- endmacro %}
