{#- Generic tests read their model through get_where_subquery (dbt's hook for the `where` test
    config). This override keeps that and, when var test_events_after is set (an incremental
    `pgrecs refresh` sets it to the oldest refresh mark of its tenants), limits the tests on the
    event-level relations to the rows this run could have changed: events after the mark, the
    rows of the users who have such events, the days that hold them. Tests on every other model,
    and every test of a full refresh or a plain `dbt build`, read everything. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- set scoped = var('incremental_refresh', false) -%}
    {%- set conditions = [] -%}
    {%- if where -%}{%- do conditions.append('(' ~ where ~ ')') -%}{%- endif -%}
    {%- if scoped -%}
        {%- set name = relation.identifier -%}
        {%- set after = '(select coalesce(min(mark.last_event_id), 0) from ' ~ source('pgrecs', 'refresh_state') ~ ' as mark)' -%}
        {%- if name in ('events', 'stg_pgrecs__events') -%}
            {%- do conditions.append('event_id > ' ~ after) -%}
        {%- elif name in ('int_user_items_aggregated', 'int_basket_items_weighted', 'fct_user_recent_interactions') -%}
            {%- do conditions.append('user_id = any(array(select distinct new_events.user_id from '
                ~ source('pgrecs', 'events') ~ ' as new_events where new_events.event_id > ' ~ after ~ '))') -%}
        {%- elif name == 'int_item_events_daily' -%}
            {%- do conditions.append('last_event_id > ' ~ after) -%}
        {%- endif -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ conditions | join(' and ') ~ ') as dbt_subquery') -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
