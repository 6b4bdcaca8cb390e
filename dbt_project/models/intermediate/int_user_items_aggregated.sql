{{ config(
    materialized='incremental' if events_incremental_ok() else 'table',
    incremental_strategy='delete+insert',
    unique_key=['tenant_id', 'user_id', 'item_id'],
    pre_hook=["set work_mem = '256MB'"],
    post_hook=[
        "reset work_mem",
        "{{ index_once('tenant_id, user_id, item_id') }}",
        "{{ index_once('tenant_id, user_id, last_at desc, item_id desc') }}",
        "{{ index_once('tenant_id, last_event_id') }}",
        "{% if not is_incremental() %}analyze {{ this }}{% endif %}",
    ],
) }}
-- One row per user and item with a positive total event weight: the interaction matrix that the
-- co-occurrence baskets and EASE are built from. (The user history that scoring reads is
-- pgrecs.user_history in sql/050_scoring.sql, over the events table.)
-- Incremental (macro events_incremental_ok): a run reads only the events newer than the model's
-- high-water mark (max last_event_id) and merges them into the stored rows of the (user, item)
-- pairs they belong to: sums and counts add up, first/last take the extremes. Every other pair
-- is left alone.
with

{%- if is_incremental() %}

scoped as materialized (

    select * from ({{ new_staged_events_sql() }}) as new_events
    where weight > 0

),
{%- else %}

scoped as (

    select * from {{ ref('stg_pgrecs__events') }}
    where weight > 0

),
{%- endif %}

aggregated as (

    select
        tenant_id,
        user_id,
        item_id,
        sum(weight) as weight_sum,
        count(*) as interactions,
        min(occurred_at) as first_at,
        max(occurred_at) as last_at,
        max(event_id) as last_event_id,
        max(weight) as strongest_event_weight,
        bool_or(event_type = 'purchase') as purchased
    from scoped
    group by tenant_id, user_id, item_id

),

{%- if is_incremental() %}

final as (

    -- new part merged into the stored row; the newer of the two last events is the pair's last
    select
        new.tenant_id,
        new.user_id,
        new.item_id,
        new.weight_sum + coalesce(old.weight_sum, 0) as weight_sum,
        new.interactions + coalesce(old.interactions, 0) as interactions,
        least(new.first_at, old.first_at) as first_at,
        greatest(new.last_at, old.last_at) as last_at,
        greatest(new.last_event_id, old.last_event_id) as last_event_id,
        greatest(new.strongest_event_weight, old.strongest_event_weight) as strongest_event_weight,
        new.purchased or coalesce(old.purchased, false) as purchased
    from aggregated as new
    left join lateral (
        -- the stored row of the pair: one index lookup per pair (the planner cannot tell how few
        -- the new pairs are)
        select stored.*
        from {{ this }} as stored
        where stored.tenant_id = new.tenant_id
            and stored.user_id = new.user_id
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
