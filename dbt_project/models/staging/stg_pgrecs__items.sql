{{ config(materialized="table") }}
-- One row per item: raw columns kept as *_raw, cleaned columns beside them (sql/010_text.sql).
with

source as (

    select * from {{ source('pgrecs', 'items') }}

),

cleaned as (

    select
        item_id,
        tenant_id,
        external_id,
        tie_key,
        title as title_raw,
        description as description_raw,
        brand as brand_raw,
        category_path as category_path_raw,
        attributes,
        pgrecs.clean_text(title) as title,
        pgrecs.clean_description(description) as description,
        pgrecs.clean_label(brand) as brand,
        pgrecs.label_key(brand) as brand_key,
        array(
            select pgrecs.clean_label(c)
            from unnest(category_path) with ordinality as p (c, n)
            where pgrecs.clean_label(c) is not null
            order by n
        ) as category_path,
        pgrecs.label_key(category_path[cardinality(category_path)]) as category_key,
        price,
        currency,
        stock,
        margin,
        nullif(btrim(image_url), '') as image_url,
        active,
        embed_override,
        created_at,
        updated_at
    from source

),

final as (

    select
        cleaned.*,
        size.size_value,
        size.size_unit
    from cleaned
    left join lateral pgrecs.parse_size(cleaned.title) as size on true

)

select * from final
