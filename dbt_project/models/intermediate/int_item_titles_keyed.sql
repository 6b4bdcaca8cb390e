-- Title matching keys for the duplicate checks: the cleaned title in lower case with punctuation
-- folded to spaces.
with

items as (

    select * from {{ ref('stg_pgrecs__items') }}

),

final as (

    select
        tenant_id,
        item_id,
        btrim(regexp_replace(lower(title), '[^[:alnum:]]+', ' ', 'g')) as title_key
    from items
    where title is not null

)

select * from final
where title_key <> ''
