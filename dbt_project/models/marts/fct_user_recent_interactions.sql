{{ config(materialized="view") }}
-- Each user's most recent items (var user_history_items), weighted by event type and recency:
--   weight = sum over the user's events on the item of event weight * 0.5 ^ (age_days / var user_history_half_life_days)
-- computed from int_user_items_aggregated as history_weight_at_last * 0.5 ^ (age of the pair's last
-- event / half-life), the same sum without reading the events again.
-- A view (see the YAML): the weights move with the reference time.
-- Scoring reads live events at request time; this mart is the batch view of the same inputs
-- (evaluation, analysts, a fallback when the events table is large).
with

users as (

    select * from {{ ref('stg_pgrecs__users') }}

),

reference as (

    select * from {{ ref('int_tenant_reference_times') }}

),

recent as (

    -- per user, the most recent items straight from the (tenant_id, user_id, last_at desc,
    -- item_id desc) index of int_user_items_aggregated: the scan stops at the cap, and a filter on
    -- the user reaches it
    select
        users.tenant_id,
        users.user_id,
        user_items.item_id,
        user_items.history_weight_at_last,
        user_items.interactions,
        user_items.strongest_event_weight,
        user_items.purchased,
        user_items.last_at,
        user_items.recency_rank
    from users
    cross join lateral (
        select
            user_items.*,
            -- items last seen at one timestamp share a rank: rows inside a tie have no order
            dense_rank() over (order by user_items.last_at desc) as recency_rank
        from {{ ref('int_user_items_aggregated') }} as user_items
        where user_items.tenant_id = users.tenant_id
            and user_items.user_id = users.user_id
        order by user_items.last_at desc, user_items.item_id desc
        limit {{ var('user_history_items') | int }}
    ) as user_items

),

final as (

    select
        recent.tenant_id,
        recent.user_id,
        recent.item_id,
        recent.history_weight_at_last * power(0.5, least(
            extract(epoch from reference.as_of - recent.last_at)::double precision / 86400.0
            / {{ var("user_history_half_life_days") | float }}, 100)) as weight,
        recent.interactions,
        recent.strongest_event_weight,
        recent.purchased,
        recent.last_at,
        recent.recency_rank
    from recent
    inner join reference on reference.tenant_id = recent.tenant_id

)

select * from final
