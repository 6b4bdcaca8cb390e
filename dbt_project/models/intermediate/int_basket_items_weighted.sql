{{ config(
    materialized='incremental' if events_incremental_ok() else 'table',
    incremental_strategy='delete+insert',
    unique_key=['tenant_id', 'basket_id'],
    post_hook=[
    "{{ index_once('tenant_id, basket_id') }}",
    "{{ index_once('tenant_id, last_event_id') }}",
    "{% if not is_incremental() %}analyze {{ this }}{% endif %}",
]) }}
-- Baskets for co-occurrence: each user's history (basket_id = the user id, from
-- int_user_items_aggregated) and, where events carry a session id, each session (basket_id = a
-- negative 62-bit hash of user and session id, from int_session_items_aggregated; weight times
-- var session_weight).
-- Item weight in a basket: ln(1 + total event weight). A basket keeps its
-- var cooc_max_basket_items most recent distinct items (ties: the smaller tie_key, a hash of the
-- external id, so an invoice longer than the cap keeps the same lines whatever its row order).
-- Incremental: a run rebuilds only the baskets whose rows upstream changed since the model's
-- high-water mark (max last_event_id): the user baskets of the users, and the session baskets of
-- the sessions, with new events; each from its upstream rows' top var cooc_max_basket_items by
-- recency.
{%- set cap = var('cooc_max_basket_items') | int %}
with

{%- if is_incremental() %}

changed_users as materialized (

    {{ rows_after_mark_sql(ref('int_user_items_aggregated'), 'changed.tenant_id, changed.user_id') }}

),

-- read by the incremental branch below (the linter renders a full build, hence the noqa)
changed_sessions as materialized (  -- noqa: ST03

    {{ rows_after_mark_sql(ref('int_session_items_aggregated'), 'changed.tenant_id, changed.basket_id') }}

),

capped as (

    select
        user_items.tenant_id,
        user_items.user_id,
        user_items.user_id as basket_id,
        user_items.item_id,
        ln(1 + user_items.weight_sum) as weight,
        user_items.last_event_id
    from changed_users
    cross join lateral (
        select user_items.*
        from {{ ref('int_user_items_aggregated') }} as user_items
        inner join {{ source('pgrecs', 'items') }} as items
            on items.item_id = user_items.item_id
        where user_items.tenant_id = changed_users.tenant_id
            and user_items.user_id = changed_users.user_id
        order by user_items.last_at desc, items.tie_key asc
        limit {{ cap }}
    ) as user_items

    {%- if var('session_weight') | float > 0 %}
    union all

    select
        session_items.tenant_id,
        session_items.user_id,
        session_items.basket_id,
        session_items.item_id,
        {{ var('session_weight') | float }} * ln(1 + session_items.weight_sum) as weight,
        session_items.last_event_id
    from changed_sessions
    cross join lateral (
        select session_items.*
        from {{ ref('int_session_items_aggregated') }} as session_items
        inner join {{ source('pgrecs', 'items') }} as items
            on items.item_id = session_items.item_id
        where session_items.tenant_id = changed_sessions.tenant_id
            and session_items.basket_id = changed_sessions.basket_id
        order by session_items.last_at desc, items.tie_key asc
        limit {{ cap }}
    ) as session_items
    {%- endif %}

),
{%- else %}

baskets as (

    select
        tenant_id,
        user_id,
        user_id as basket_id,
        item_id,
        ln(1 + weight_sum) as weight,
        last_at,
        last_event_id
    from {{ ref('int_user_items_aggregated') }}

    {%- if var('session_weight') | float > 0 %}
    union all

    select
        tenant_id,
        user_id,
        basket_id,
        item_id,
        {{ var('session_weight') | float }} * ln(1 + weight_sum) as weight,
        last_at,
        last_event_id
    from {{ ref('int_session_items_aggregated') }}
    {%- endif %}

),

ranked as (

    select
        baskets.*,
        row_number() over (
            partition by baskets.tenant_id, baskets.basket_id order by baskets.last_at desc, items.tie_key asc
        ) as recency_rank
    from baskets
    inner join {{ source('pgrecs', 'items') }} as items
        on items.item_id = baskets.item_id

),

capped as (

    select tenant_id, user_id, basket_id, item_id, weight, last_event_id
    from ranked
    where recency_rank <= {{ cap }}

),
{%- endif %}

final as (

    select tenant_id, user_id, basket_id, item_id, weight, last_event_id
    from capped

)

select * from final
