{{ config(
    materialized='incremental' if events_incremental_ok() else 'table',
    incremental_strategy='delete+insert',
    unique_key=['tenant_id', 'user_id', 'item_id'],
    post_hook=[
        "{{ index_once('tenant_id, user_id, item_id') }}",
        "{{ index_once('tenant_id, user_id, last_at desc, item_id desc') }}",
        "{{ index_once('tenant_id, last_event_id') }}",
        "{% if not is_incremental() %}analyze {{ this }}{% endif %}",
    ],
) }}
-- One row per user and item with a positive total event weight: the interaction matrix that the
-- co-occurrence baskets, the user histories and EASE are built from.
--   history_weight_at_last = sum of weight * 0.5 ^ ((last_at - occurred_at) / var user_history_half_life_days):
--   the user-history weight decayed to the pair's own last event, so that it does not depend on the
--   reference time; fct_user_recent_interactions decays it on to the reference time.
-- Incremental (macro events_incremental_ok): a run reads only the events newer than the model's
-- high-water mark (max last_event_id) and merges them into the stored rows of the (user, item)
-- pairs they belong to: sums and counts add up, first/last take the extremes, and the stored
-- history weight is decayed from the old last event to the new one before the new events' part
-- is added (the same sum, regrouped). Every other pair is left alone.
{%- set hl = var("user_history_half_life_days") | float %}
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

with_pair_last as (

    select
        scoped.*,
        max(scoped.occurred_at) over (partition by scoped.tenant_id, scoped.user_id, scoped.item_id) as new_last_at
    from scoped

),

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
        bool_or(event_type = 'purchase') as purchased,
        sum(weight * power(0.5, least(
            extract(epoch from new_last_at - occurred_at)::double precision / 86400.0 / {{ hl }},
            100))) as history_weight_at_last
    from with_pair_last
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
        new.purchased or coalesce(old.purchased, false) as purchased,
        new.history_weight_at_last * power(0.5, least(
            extract(epoch from greatest(new.last_at, old.last_at) - new.last_at)::double precision / 86400.0 / {{ hl }},
            100))
        + coalesce(old.history_weight_at_last * power(0.5, least(
            extract(epoch from greatest(new.last_at, old.last_at) - old.last_at)::double precision / 86400.0 / {{ hl }},
            100)), 0) as history_weight_at_last
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
