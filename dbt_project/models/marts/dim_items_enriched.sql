-- The text the embedding pipeline embeds for each item. It calls pgrecs.compose_item_text on the
-- raw columns, exactly as the live embedding queue does, so both always agree; text_problem says
-- why an item is too poor to embed (null: embeddable).
with

items as (

    select * from {{ ref('stg_pgrecs__items') }}

),

composed as (

    select
        tenant_id,
        item_id,
        external_id,
        title,
        brand,
        category_path,
        description,
        size_value,
        size_unit,
        active,
        pgrecs.compose_item_text(title_raw, description_raw, brand_raw, category_path_raw, attributes) as embedding_text
    from items

),

final as (

    select
        *,
        pgrecs.item_text_problem(embedding_text) as text_problem,
        pgrecs.item_text_problem(embedding_text) is null as embeddable,
        sha256(convert_to(coalesce(embedding_text, ''), 'UTF8')) as text_sha256
    from composed

)

select * from final
