{#- The reference time per tenant: var('as_of') or the tenant's latest event. -#}
{% macro as_of_expr(latest_column) -%}
    {%- if var('as_of') is not none -%}'{{ var("as_of") }}'::timestamptz{%- else -%}{{ latest_column }}{%- endif -%}
{%- endmacro %}

{#- Leaf category key of an item (null when it has none). -#}
{% macro leaf_category(path_column) -%}
    {{ path_column }}[cardinality({{ path_column }})]
{%- endmacro %}

{#- One row per tenant with events, with its reference time (var as_of or the tenant's latest
    event). Grouped from the events rather than joined from pgrecs.tenants: the planner then
    knows there are few rows and hashes them instead of walking the event log in tenant order. -#}
{% macro reference_times_sql() -%}
    select
        e.tenant_id,
        {{ as_of_expr('max(e.occurred_at)') }} as as_of
    from {{ source('pgrecs', 'events') }} as e
    group by e.tenant_id
{%- endmacro %}
