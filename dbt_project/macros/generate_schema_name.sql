{#- Models go to exactly the schema they name (recs_staging, recs_intermediate, recs_marts),
    not "<target schema>_<schema>". -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
