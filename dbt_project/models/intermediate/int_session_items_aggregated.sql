{{ config(
    materialized='incremental' if events_incremental_ok() else 'table',
    incremental_strategy='delete+insert',
    unique_key=['tenant_id', 'basket_id', 'item_id'],
    pre_hook=["set work_mem = '256MB'"],
    post_hook=[
        "reset work_mem",
        "{{ index_once('tenant_id, basket_id, item_id') }}",
        "{{ index_once('tenant_id, last_event_id') }}",
        "{% if not is_incremental() %}analyze {{ this }}{% endif %}",
    ],
) }}
-- One row per session and item with a positive total event weight (events that carry a session
-- id): the session baskets of int_basket_items_weighted before the cap.
-- basket_id = a negative 62-bit hash of user and session id, stable across runs (user baskets
-- use the positive user id).
-- Incremental (macro events_incremental_ok): a run reads only the events newer than the model's
-- high-water mark (max last_event_id) and merges them into the stored rows of the (session,
-- item) pairs they belong to; every other session is left alone.
with

{%- if is_incremental() %}

scoped as materialized (

    select * from ({{ new_staged_events_sql() }}) as new_events
    where weight > 0 and session_id is not null

),
{%- else %}

scoped as (

    select * from {{ ref('stg_pgrecs__events') }}
    where weight > 0 and session_id is not null

),
{%- endif %}

aggregated as (

    select
        tenant_id,
        -1 - (hashtextextended(user_id::text || ' ' || session_id, 0) & 4611686018427387903) as basket_id,
        item_id,
        user_id,
        session_id,
        sum(weight) as weight_sum,
        max(occurred_at) as last_at,
        max(event_id) as last_event_id
    from scoped
    group by tenant_id, user_id, session_id, item_id

),

{%- if is_incremental() %}

final as (

    select
        new.tenant_id,
        new.basket_id,
        new.item_id,
        new.user_id,
        new.session_id,
        new.weight_sum + coalesce(old.weight_sum, 0) as weight_sum,
        greatest(new.last_at, old.last_at) as last_at,
        greatest(new.last_event_id, old.last_event_id) as last_event_id
    from aggregated as new
    left join lateral (
        -- one index lookup per pair (the planner cannot tell how few the new pairs are)
        select stored.*
        from {{ this }} as stored
        where stored.tenant_id = new.tenant_id
            and stored.basket_id = new.basket_id
            and stored.item_id = new.item_id
        offset 0
    ) as old on true

)
{%- else %}

final as (

    select * from aggregated

)
{%- endif %}

select * from final
