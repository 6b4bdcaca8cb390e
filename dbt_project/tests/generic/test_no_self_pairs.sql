{#- No row pairs an item with itself. -#}
{% test no_self_pairs(model, column_name, other_column) %}
select {{ column_name }} from {{ model }} where {{ column_name }} = {{ other_column }}
{% endtest %}
