-- Popularity for every item of the catalog (0 without events); formulas in int_item_events_decayed.
-- category_popularity_rank: 1 = most popular item of its leaf category (ties by item_id).
-- popularity_percentile: share of the tenant's items strictly more popular (0 = the most popular;
-- ties share a percentile), which decides the reason "popular right now".
with

items as (

    select * from {{ ref('stg_pgrecs__items') }}

),

decayed as (

    select * from {{ ref('int_item_events_decayed') }}

),

joined as (

    select
        items.tenant_id,
        items.item_id,
        items.category_key,
        coalesce(decayed.popularity, 0) as popularity,
        coalesce(decayed.recent_weight, 0) as recent_weight,
        coalesce(decayed.previous_weight, 0) as previous_weight,
        coalesce(decayed.trending, 0) as trending,
        coalesce(decayed.events, 0) as events,
        coalesce(decayed.users, 0) as users,
        decayed.last_event_at
    from items
    left join decayed on decayed.tenant_id = items.tenant_id and decayed.item_id = items.item_id

),

final as (

    select
        *,
        case when category_key is not null then
            row_number() over (partition by tenant_id, category_key order by popularity desc, item_id asc)
        end as category_popularity_rank,
        row_number() over (partition by tenant_id order by popularity desc, item_id asc) as popularity_rank,
        ((rank() over (partition by tenant_id order by popularity desc) - 1)::double precision
            / count(*) over (partition by tenant_id))::real as popularity_percentile
    from joined

)

select * from final
