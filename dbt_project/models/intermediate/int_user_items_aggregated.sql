{{ config(
    materialized='incremental' if events_incremental_ok() else 'table',
    incremental_strategy='delete+insert',
    unique_key=['tenant_id', 'user_id'],
    post_hook=[
        "{{ index_once('tenant_id, item_id') }}",
        "{{ index_once('tenant_id, user_id') }}",
        "{{ index_once('tenant_id, last_event_id') }}",
        "{% if not is_incremental() %}analyze {{ this }}{% endif %}",
    ],
) }}
-- One row per user and item with a positive total event weight: the interaction matrix that the
-- co-occurrence baskets, the user histories and EASE are built from.
-- Incremental: a run rebuilds the rows of the users with events newer than the model's
-- high-water mark (max last_event_id), from all of those users' events (macro events_incremental_ok).
--   history_weight_at_last = sum of weight * 0.5 ^ ((last_at - occurred_at) / var user_history_half_life_days):
--   the user-history weight decayed to the pair's own last event, so that it does not depend on the
--   reference time; fct_user_recent_interactions decays it on to the reference time.
with

events as (

    select * from {{ ref('stg_pgrecs__events') }}
    where weight > 0

),

{%- if is_incremental() %}

changed_users as materialized (

    {{ changed_users_sql() }}

),

scoped as (

    select * from ({{ events_of_users_sql('changed_users') }}) as user_events
    where weight > 0

),
{%- else %}

scoped as (

    select * from events

),
{%- endif %}

with_pair_last as (

    select
        scoped.*,
        max(occurred_at) over (partition by tenant_id, user_id, item_id) as pair_last_at
    from scoped

),

final as (

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
            extract(epoch from pair_last_at - occurred_at)::double precision / 86400.0 / {{ var("user_history_half_life_days") | float }},
            100))) as history_weight_at_last
    from with_pair_last
    group by tenant_id, user_id, item_id

)

select * from final
