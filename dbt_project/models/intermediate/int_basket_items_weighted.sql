{{ config(
    materialized='incremental' if events_incremental_ok() else 'table',
    incremental_strategy='delete+insert',
    unique_key=['tenant_id', 'user_id'],
    post_hook=[
    "{{ index_once('tenant_id, user_id') }}",
    "{{ index_once('tenant_id, last_event_id') }}",
    "{% if not is_incremental() %}analyze {{ this }}{% endif %}",
]) }}
-- Baskets for co-occurrence: each user's history (basket_id = the user id) and, where events carry
-- a session id, each session (basket_id = a negative 62-bit hash of user and session id, stable
-- across runs; weight times var session_weight).
-- Incremental: a run rebuilds every basket of the users with events newer than the model's
-- high-water mark (max last_event_id), like int_user_items_aggregated.
-- Item weight in a basket: ln(1 + total event weight). A basket keeps its
-- var cooc_max_basket_items most recent distinct items.
with

user_items as (

    select * from {{ ref('int_user_items_aggregated') }}

),
{%- if is_incremental() %}

changed_users as materialized (

    {{ changed_users_sql() }}

),
{%- endif %}

session_items as (

    select
        tenant_id,
        user_id,
        session_id,
        item_id,
        sum(weight) as weight_sum,
        max(occurred_at) as last_at,
        max(event_id) as last_event_id
    {%- if is_incremental() %}
    from ({{ events_of_users_sql('changed_users') }}) as events
    {%- else %}
    from {{ ref('stg_pgrecs__events') }} as events
    {%- endif %}
    where weight > 0 and session_id is not null
    group by tenant_id, user_id, session_id, item_id

),

baskets as (

    select
        user_items.tenant_id,
        user_items.user_id,
        user_items.user_id as basket_id,
        user_items.item_id,
        ln(1 + user_items.weight_sum) as weight,
        user_items.last_at,
        user_items.last_event_id
    {%- if is_incremental() %}
    from changed_users
    inner join user_items
        on user_items.tenant_id = changed_users.tenant_id
        and user_items.user_id = changed_users.user_id
    {%- else %}
    from user_items
    {%- endif %}

    {%- if var('session_weight') | float > 0 %}
    union all

    select
        tenant_id,
        user_id,
        -1 - (hashtextextended(user_id::text || ' ' || session_id, 0) & 4611686018427387903) as basket_id,
        item_id,
        {{ var('session_weight') | float }} * ln(1 + weight_sum) as weight,
        last_at,
        last_event_id
    from session_items
    {%- endif %}

),

capped as (

    select
        *,
        row_number() over (partition by tenant_id, basket_id order by last_at desc, item_id desc) as recency_rank
    from baskets

),

final as (

    select tenant_id, user_id, basket_id, item_id, weight, last_event_id
    from capped
    where recency_rank <= {{ var('cooc_max_basket_items') | int }}

)

select * from final
