{#- Generic tests read their model through get_where_subquery (dbt's hook for the `where` test
    config). This override keeps that and, when var test_events_after is set (an incremental
    `pgrecs refresh` sets it to the oldest refresh mark of its tenants), limits the tests on the
    event-level relations to the rows this run could have changed: events after the mark, the
    (user, item) and (session, item) rows merged with them, the baskets rebuilt from those, the days
    that hold them. Tests on every other model,
    and every test of a full refresh or a plain `dbt build`, read everything. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- set scoped = var('incremental_refresh', false) -%}
    {%- set conditions = [] -%}
    {%- if where -%}{%- do conditions.append('(' ~ where ~ ')') -%}{%- endif -%}
    {%- if scoped -%}
        {%- set name = relation.identifier -%}
        {%- set after = '(select coalesce(min(mark.last_event_id), 0) from ' ~ source('pgrecs', 'refresh_state') ~ ' as mark)' -%}
        {%- if execute and name in ('events', 'stg_pgrecs__events', 'int_user_items_aggregated', 'int_session_items_aggregated',
                                    'int_basket_items_weighted', 'int_item_events_daily', 'int_item_events_monthly') -%}
            {#- the mark as a literal, read when the test is compiled: against a subquery the planner
                assumes a third of the rows match and scans the whole relation instead of its index -#}
            {%- set after = run_query('select ' ~ after).columns[0].values()[0] | int -%}
        {%- endif -%}
        {%- if name in ('events', 'stg_pgrecs__events') -%}
            {%- do conditions.append('event_id > ' ~ after) -%}
        {%- elif name in ('int_user_items_aggregated', 'int_session_items_aggregated') -%}
            {#- the rows merged this run: their last event is after the mark -#}
            {%- do conditions.append('last_event_id > ' ~ after) -%}
        {%- elif name == 'int_basket_items_weighted' -%}
            {#- the baskets rebuilt this run: of users and sessions with rows merged this run -#}
            {#- the upstream models sit beside it (ref() here would add test dependencies dbt cannot infer) -#}
            {%- set user_items = api.Relation.create(database=relation.database, schema=relation.schema, identifier='int_user_items_aggregated') -%}
            {%- set session_items = api.Relation.create(database=relation.database, schema=relation.schema, identifier='int_session_items_aggregated') -%}
            {%- do conditions.append('basket_id = any(array(select changed.user_id from '
                ~ user_items ~ ' as changed where changed.last_event_id > ' ~ after
                ~ ' union select changed.basket_id from ' ~ session_items
                ~ ' as changed where changed.last_event_id > ' ~ after ~ '))') -%}
        {%- elif name in ('int_item_events_daily', 'int_item_events_monthly') -%}
            {%- do conditions.append('last_event_id > ' ~ after) -%}
        {%- endif -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ conditions | join(' and ') ~ ') as dbt_subquery') -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
