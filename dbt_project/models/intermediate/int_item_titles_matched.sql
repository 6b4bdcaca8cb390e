-- For each titled item: how many other items share its exact title key, and its most similar other
-- title (pg_trgm similarity) among its candidates.
-- Candidates come from sorted-neighbourhood blocking: the 3 titles before and after it in the
-- order of the key and in the order of the reversed key, so titles that differ only at the end
-- ("... Edition" / "... Editions") or only at the start are compared; an all-pairs trigram join
-- costs minutes on a few thousand short titles. Titles differing at both ends are not matched.
{%- set window = 3 %}
with

titles as (

    select * from {{ ref('int_item_titles_keyed') }}

),

exact as (

    select tenant_id, title_key, count(*) as items
    from titles
    group by tenant_id, title_key

),

distinct_keys as (

    select tenant_id, title_key, reverse(title_key) as reversed_key
    from exact

),

ordered as (

    select
        tenant_id,
        title_key,
        array[
            {%- for k in range(1, window + 1) %}
            lag(title_key, {{ k }}) over by_key, lead(title_key, {{ k }}) over by_key,
            lag(title_key, {{ k }}) over by_reversed, lead(title_key, {{ k }}) over by_reversed{{ "," if not loop.last }}
            {%- endfor %}
        ] as candidates
    from distinct_keys
    window
        by_key as (partition by tenant_id order by title_key),
        by_reversed as (partition by tenant_id order by reversed_key)

),

best_key as (

    select distinct on (ordered.tenant_id, ordered.title_key)
        ordered.tenant_id,
        ordered.title_key,
        candidate.key as nearest_key,
        similarity(ordered.title_key, candidate.key) as nearest_similarity
    from ordered
    cross join lateral unnest(ordered.candidates) as candidate (key)
    where candidate.key is not null
    order by ordered.tenant_id asc, ordered.title_key asc, similarity(ordered.title_key, candidate.key) desc, candidate.key asc

),

nearest_item as (

    select tenant_id, title_key, min(item_id) as item_id
    from titles
    group by tenant_id, title_key

),

final as (

    select
        titles.tenant_id,
        titles.item_id,
        titles.title_key,
        exact.items - 1 as same_title_items,
        nearest_item.item_id as nearest_item_id,
        best_key.nearest_similarity
    from titles
    inner join exact on exact.tenant_id = titles.tenant_id and exact.title_key = titles.title_key
    left join best_key on best_key.tenant_id = titles.tenant_id and best_key.title_key = titles.title_key
    left join nearest_item
        on nearest_item.tenant_id = best_key.tenant_id and nearest_item.title_key = best_key.nearest_key

)

select * from final
