-- Catalog-level audit, one row per tenant: counts and shares of every audit flag.
with

audit as (

    select * from {{ ref('fct_item_audit') }}

),

items as (

    select * from {{ ref('stg_pgrecs__items') }}

),

brand_spellings as (

    select tenant_id, count(*) filter (where spellings > 1) as brands_with_variants, count(*) as brands
    from (
        select tenant_id, brand_key, count(distinct brand_raw) as spellings
        from items
        where brand_key is not null
        group by tenant_id, brand_key
    ) as per_brand
    group by tenant_id

),

per_tenant as (

    select
        tenant_id,
        count(*) as items,
        count(*) filter (where not has_title) as no_title,
        count(*) filter (where not has_description) as no_description,
        count(*) filter (where 'short_description' = any(quality_flags)) as short_description,
        count(*) filter (where not has_brand) as no_brand,
        count(*) filter (where not has_category) as no_category,
        count(*) filter (where not has_price) as no_price,
        count(*) filter (where not has_image) as no_image,
        count(*) filter (where 'duplicate_title' = any(quality_flags)) as duplicate_title_items,
        count(distinct title_key) filter (where 'duplicate_title' = any(quality_flags)) as duplicate_title_groups,
        count(*) filter (where 'near_duplicate_title' = any(quality_flags)) as near_duplicate_title_items,
        count(*) filter (where 'mostly_markup' = any(quality_flags)) as mostly_markup,
        count(*) filter (where 'mostly_non_letters' = any(quality_flags)) as mostly_non_letters,
        count(*) filter (where 'boilerplate' = any(quality_flags)) as boilerplate,
        count(*) filter (where 'repeated_description' = any(quality_flags)) as repeated_description,
        count(*) filter (where 'mojibake' = any(quality_flags)) as mojibake,
        count(*) filter (where 'not_embeddable' = any(quality_flags)) as not_embeddable,
        round(avg(description_length), 1) as mean_description_length,
        round(avg(quality_score), 3) as mean_quality_score,
        round(percentile_cont(0.1) within group (order by quality_score)::numeric, 3) as p10_quality_score
    from audit
    group by tenant_id

),

final as (

    select
        per_tenant.*,
        round(per_tenant.no_description::numeric / per_tenant.items, 4) as share_no_description,
        round(per_tenant.no_title::numeric / per_tenant.items, 4) as share_no_title,
        round(per_tenant.not_embeddable::numeric / per_tenant.items, 4) as share_not_embeddable,
        coalesce(brand_spellings.brands, 0) as brands,
        coalesce(brand_spellings.brands_with_variants, 0) as brands_with_spelling_variants
    from per_tenant
    left join brand_spellings on brand_spellings.tenant_id = per_tenant.tenant_id

)

select * from final
