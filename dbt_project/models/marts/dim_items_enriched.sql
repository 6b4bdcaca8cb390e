-- The text the embedding pipeline embeds for each item. It calls pgrecs.compose_item_text on the
-- raw columns, exactly as the live embedding queue does, so both always agree. rule_problem is
-- the junk-text rule's verdict (pgrecs.item_text_problem); text_problem the decision, the
-- merchant's embed_override first (pgrecs.item_embed_problem; null: embedded).
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
        embed_override,
        pgrecs.compose_item_text(title_raw, description_raw, brand_raw, category_path_raw, attributes) as embedding_text
    from items

),

final as (

    select
        *,
        pgrecs.item_text_problem(embedding_text) as rule_problem,
        pgrecs.item_embed_problem(embedding_text, embed_override) as text_problem,
        pgrecs.item_embed_problem(embedding_text, embed_override) is null as embeddable,
        sha256(convert_to(coalesce(embedding_text, ''), 'UTF8')) as text_sha256
    from composed

)

select * from final
