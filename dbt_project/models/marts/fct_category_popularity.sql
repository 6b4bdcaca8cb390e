-- Popularity per leaf category: the summed time-decayed popularity of its items, ranked per tenant.
with

popularity as (

    select * from {{ ref('fct_item_popularity') }}
    where category_key is not null

),

items as (

    select * from {{ ref('stg_pgrecs__items') }}

),

labels as (

    -- the most common spelling of each category key is its display name
    select distinct on (tenant_id, category_key)
        tenant_id,
        category_key,
        category_path[cardinality(category_path)] as category
    from items
    where category_key is not null
    group by tenant_id, category_key, category_path[cardinality(category_path)]
    order by tenant_id, category_key, count(*) desc, category_path[cardinality(category_path)]

),

per_category as (

    select
        tenant_id,
        category_key,
        count(*) as items,
        sum(popularity) as popularity,
        sum(trending) as trending
    from popularity
    group by tenant_id, category_key

),

final as (

    select
        per_category.tenant_id,
        per_category.category_key,
        labels.category,
        per_category.items,
        per_category.popularity,
        per_category.trending,
        row_number() over (partition by per_category.tenant_id order by per_category.popularity desc, per_category.category_key asc) as popularity_rank
    from per_category
    inner join labels on labels.tenant_id = per_category.tenant_id and labels.category_key = per_category.category_key

)

select * from final
