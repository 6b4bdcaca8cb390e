{{ config(materialized="view") }}
-- Each user's most recent items (var user_history_items), weighted by event type and recency:
--   weight = sum over the user's events on the item of event weight * 0.5 ^ (age_days / var user_history_half_life_days)
-- computed from int_user_items_aggregated as history_weight_at_last * 0.5 ^ (age of the pair's last
-- event / half-life), the same sum without reading the events again.
-- A view (see the YAML): the weights move with the reference time.
-- Scoring reads live events at request time; this mart is the batch view of the same inputs
-- (evaluation, analysts, a fallback when the events table is large).
with

user_items as (

    select * from {{ ref('int_user_items_aggregated') }}

),

reference as (

    select * from {{ ref('int_tenant_reference_times') }}

),

per_user_item as (

    select
        user_items.tenant_id,
        user_items.user_id,
        user_items.item_id,
        user_items.history_weight_at_last * power(0.5, least(
            extract(epoch from reference.as_of - user_items.last_at)::double precision / 86400.0
            / {{ var("user_history_half_life_days") | float }}, 100)) as weight,
        user_items.interactions,
        user_items.strongest_event_weight,
        user_items.purchased,
        user_items.last_at
    from user_items
    inner join reference on reference.tenant_id = user_items.tenant_id

),

ranked as (

    select
        *,
        row_number() over (partition by tenant_id, user_id order by last_at desc, item_id desc) as recency_rank
    from per_user_item

),

final as (

    select *
    from ranked
    where recency_rank <= {{ var('user_history_items') | int }}

)

select * from final
