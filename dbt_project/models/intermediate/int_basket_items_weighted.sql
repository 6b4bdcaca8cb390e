{{ config(post_hook=[
    "create index if not exists {{ this.name }}_basket on {{ this }} (tenant_id, basket_id) include (item_id, weight)",
    "create index if not exists {{ this.name }}_item on {{ this }} (tenant_id, item_id) include (basket_id, weight)",
    "analyze {{ this }}",
]) }}
-- Baskets for co-occurrence: each user's history (basket_id = the user id) and, where events carry
-- a session id, each session (basket_id = minus a session number, weight times var session_weight;
-- session numbers are only stable within one build).
-- Item weight in a basket: ln(1 + total event weight). A basket keeps its
-- var cooc_max_basket_items most recent distinct items.
with

user_items as (

    select * from {{ ref('int_user_items_aggregated') }}

),

session_items as (

    select
        tenant_id,
        user_id,
        session_id,
        item_id,
        sum(weight) as weight_sum,
        max(occurred_at) as last_at
    from {{ ref('stg_pgrecs__events') }}
    where weight > 0 and session_id is not null
    group by tenant_id, user_id, session_id, item_id

),

baskets as (

    select
        tenant_id,
        user_id,
        user_id as basket_id,
        item_id,
        ln(1 + weight_sum) as weight,
        last_at
    from user_items

    {%- if var('session_weight') | float > 0 %}
    union all

    select
        tenant_id,
        user_id,
        -dense_rank() over (order by user_id, session_id) as basket_id,
        item_id,
        {{ var('session_weight') | float }} * ln(1 + weight_sum) as weight,
        last_at
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

    select tenant_id, user_id, basket_id, item_id, weight
    from capped
    where recency_rank <= {{ var('cooc_max_basket_items') | int }}

)

select * from final
