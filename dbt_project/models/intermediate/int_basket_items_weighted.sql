{{ config(
    materialized='incremental' if events_incremental_ok() else 'table',
    incremental_strategy='delete+insert',
    unique_key=['tenant_id', 'user_id'],
    post_hook=[
    "create index if not exists {{ this.name }}_basket on {{ this }} (tenant_id, basket_id) include (item_id, weight)",
    "create index if not exists {{ this.name }}_item on {{ this }} (tenant_id, item_id) include (basket_id, weight)",
    "create index if not exists {{ this.name }}_user on {{ this }} (tenant_id, user_id)",
    "analyze {{ this }}",
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

changed_users as (

    {{ changed_users_sql(ref('stg_pgrecs__events')) }}

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
    from {{ ref('stg_pgrecs__events') }} as events
    where weight > 0 and session_id is not null
    {%- if is_incremental() %}
        and exists (
            select 1 from changed_users
            where changed_users.tenant_id = events.tenant_id and changed_users.user_id = events.user_id
        )
    {%- endif %}
    group by tenant_id, user_id, session_id, item_id

),

baskets as (

    select
        tenant_id,
        user_id,
        user_id as basket_id,
        item_id,
        ln(1 + weight_sum) as weight,
        last_at,
        last_event_id
    from user_items
    {%- if is_incremental() %}
    where exists (
        select 1 from changed_users
        where changed_users.tenant_id = user_items.tenant_id and changed_users.user_id = user_items.user_id
    )
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
