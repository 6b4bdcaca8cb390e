{#- Within each group, the ranks are exactly 1..count (no gaps, no duplicates). -#}
{% test ranks_dense_from_one(model, column_name, group_by) %}
select {{ group_by | join(', ') }}, count(*) as n, min({{ column_name }}) as lo, max({{ column_name }}) as hi,
    count(distinct {{ column_name }}) as distinct_ranks
from {{ model }}
group by {{ group_by | join(', ') }}
having min({{ column_name }}) <> 1 or max({{ column_name }}) <> count(*) or count(distinct {{ column_name }}) <> count(*)
{% endtest %}
