-- Metadata quality, one row per item.
--
-- quality_score (0..1) =
--     0.35 * [has a title]
--   + 0.30 * least(description_length, 300) / 300
--   + 0.10 * [has a brand] + 0.10 * [has a category] + 0.05 * [has a price] + 0.10 * [has an image]
--   - 0.10 for each problem flag (duplicate_title, near_duplicate_title, mostly_markup,
--     mostly_non_letters, boilerplate, repeated_description, not_embeddable)
--   clamped to [0, 1] and rounded to 3 decimals.
-- quality_flags lists the missing fields (no_title, no_description, short_description (< 50
-- characters), no_brand, no_category, no_price, no_image), the problem flags above and
-- mojibake (the raw text needed repair; informational, no penalty).
with

items as (

    select * from {{ ref('stg_pgrecs__items') }}

),

enriched as (

    select * from {{ ref('dim_items_enriched') }}

),

titles as (

    select * from {{ ref('int_item_titles_matched') }}

),

shared_descriptions as (

    select tenant_id, description, count(*) as items
    from items
    where description is not null
    group by tenant_id, description

),

measured as (

    select
        items.tenant_id,
        items.item_id,
        items.external_id,
        items.title,
        items.title is not null as has_title,
        items.description is not null as has_description,
        items.brand is not null as has_brand,
        cardinality(items.category_path) > 0 as has_category,
        items.price is not null as has_price,
        items.image_url is not null as has_image,
        coalesce(length(items.description), 0) as description_length,
        coalesce(length(items.title), 0) as title_length,
        -- share of the raw title + description that is markup (tags and entities)
        coalesce(1 - length(regexp_replace(pgrecs.strip_html(raw.text), '&#?[[:alnum:]]{1,32};|\s', '', 'g'))::numeric
            / nullif(length(regexp_replace(raw.text, '\s', '', 'g')), 0), 0) as markup_share,
        -- share of the cleaned title + description that is letters (spaces not counted)
        coalesce(length(regexp_replace(clean.text, '[^[:alpha:]]', '', 'g'))::numeric
            / nullif(length(regexp_replace(clean.text, '\s', '', 'g')), 0), 0) as letter_share,
        coalesce(raw.description ~* pgrecs.boilerplate_pattern(), false) as has_boilerplate,
        coalesce(shared_descriptions.items - 1, 0) as same_description_items,
        coalesce(raw.text <> pgrecs.fix_mojibake(raw.text), false) as had_mojibake,
        titles.title_key,
        coalesce(titles.same_title_items, 0) as same_title_items,
        titles.nearest_item_id,
        titles.nearest_similarity,
        enriched.text_problem
    from items
    cross join lateral (
        select
            items.description_raw as description,
            nullif(concat_ws(' ', items.title_raw, items.description_raw), '') as text
    ) as raw
    cross join lateral (
        select nullif(concat_ws(' ', items.title, items.description), '') as text
    ) as clean
    left join shared_descriptions
        on shared_descriptions.tenant_id = items.tenant_id and shared_descriptions.description = items.description
    left join titles on titles.tenant_id = items.tenant_id and titles.item_id = items.item_id
    inner join enriched on enriched.tenant_id = items.tenant_id and enriched.item_id = items.item_id

),

flagged as (

    select
        *,
        array_remove(array[
            case when not has_title then 'no_title' end,
            case when not has_description then 'no_description' end,
            case when has_description and description_length < 50 then 'short_description' end,
            case when not has_brand then 'no_brand' end,
            case when not has_category then 'no_category' end,
            case when not has_price then 'no_price' end,
            case when not has_image then 'no_image' end,
            case when same_title_items > 0 then 'duplicate_title' end,
            case when same_title_items = 0 and nearest_similarity >= {{ var('near_duplicate_threshold') | float }}
                then 'near_duplicate_title' end,
            case when markup_share > 0.5 then 'mostly_markup' end,
            case when has_title and letter_share < 0.5 then 'mostly_non_letters' end,
            case when has_boilerplate then 'boilerplate' end,
            case when same_description_items >= 2 then 'repeated_description' end,
            case when had_mojibake then 'mojibake' end,
            case when text_problem is not null then 'not_embeddable' end
        ], null) as quality_flags
    from measured

),

final as (

    select
        *,
        round(greatest(0, least(1,
            0.35 * has_title::int
            + 0.30 * least(description_length, 300) / 300.0
            + 0.10 * has_brand::int + 0.10 * has_category::int
            + 0.05 * has_price::int + 0.10 * has_image::int
            - 0.10 * cardinality(array(
                select f from unnest(quality_flags) as f
                where f in ('duplicate_title', 'near_duplicate_title', 'mostly_markup', 'mostly_non_letters',
                            'boilerplate', 'repeated_description', 'not_embeddable')
            ))
        ))::numeric, 3) as quality_score
    from flagged

)

select * from final
