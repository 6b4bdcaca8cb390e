{#- The reference time per tenant: var('as_of') or the tenant's latest event. -#}
{% macro as_of_expr(latest_column) -%}
    {%- if var('as_of') is not none -%}'{{ var("as_of") }}'::timestamptz{%- else -%}{{ latest_column }}{%- endif -%}
{%- endmacro %}

{#- Leaf category key of an item (null when it has none). -#}
{% macro leaf_category(path_column) -%}
    {{ path_column }}[cardinality({{ path_column }})]
{%- endmacro %}
