{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook=["set work_mem = '512MB'", "{% if is_incremental() %}delete from {{ this }} as t using {{ ref('int_items_cooccurrence_touched') }} as touched where touched.tenant_id = t.tenant_id and touched.item_id = t.item_id{% endif %}"],
    post_hook=["reset work_mem", "{{ index_once('tenant_id, item_id, rank') }}", "analyze {{ this }}"],
) }}
-- Top-N co-occurrence neighbours per item (var cooc_top_n), recomputed for the touched items only
-- when run incrementally.
--
-- score(i, j) = cosine(w_i, w_j) * n_ij / (n_ij + var cooc_shrinkage)
--   w_i  = the item's weights over baskets (ln(1 + event weight), see int_basket_items_weighted)
--   n_ij = the number of baskets holding both (support); the shrinkage factor pulls pairs seen in
--          only a few baskets towards zero, so rare items do not top every list by chance.
-- Cosine rather than raw counts: raw counts put the most popular items at the top of every list.
with

touched as (

    select * from {{ ref('int_items_cooccurrence_touched') }}

),

basket_items as (

    select * from {{ ref('int_basket_items_weighted') }}

),

norms as (

    select * from {{ ref('int_item_basket_norms') }}

),

items as (

    select item_id, tie_key from {{ ref('stg_pgrecs__items') }}

),

-- Pairs are counted within the baskets that hold at least one item to recompute (all baskets on a
-- full build), each unordered pair once and then in both directions; a recomputed item's pair
-- sums are complete because every basket it is in takes part.
baskets_in_scope as (

    select distinct basket_items.tenant_id, basket_items.basket_id
    from basket_items
    {%- if is_incremental() %}
    inner join touched
        on touched.tenant_id = basket_items.tenant_id
        and touched.item_id = basket_items.item_id
    {%- endif %}

),

scoped_items as (

    select basket_items.*
    from basket_items
    {%- if is_incremental() %}
    inner join baskets_in_scope
        on baskets_in_scope.tenant_id = basket_items.tenant_id
        and baskets_in_scope.basket_id = basket_items.basket_id
    {%- endif %}

),

half_pairs as (

    select
        a.tenant_id,
        a.item_id,
        b.item_id as neighbor_item_id,
        sum(a.weight * b.weight) as dot,
        count(*) as support
    from scoped_items as a
    inner join scoped_items as b
        on b.tenant_id = a.tenant_id
        and b.basket_id = a.basket_id
        and b.item_id > a.item_id
    group by a.tenant_id, a.item_id, b.item_id

),

both_directions as (

    select tenant_id, item_id, neighbor_item_id, dot, support from half_pairs
    union all
    select tenant_id, neighbor_item_id, item_id, dot, support from half_pairs

),

pairs as (

    select both_directions.*
    from both_directions
    {%- if is_incremental() %}
    inner join touched
        on touched.tenant_id = both_directions.tenant_id
        and touched.item_id = both_directions.item_id
    {%- endif %}

),

scored as (

    select
        pairs.tenant_id,
        pairs.item_id,
        pairs.neighbor_item_id,
        pairs.support,
        pairs.dot / (item_norms.norm * neighbor_norms.norm)
            * pairs.support / (pairs.support + {{ var('cooc_shrinkage') | float }}) as score
    from pairs
    inner join norms as item_norms
        on item_norms.tenant_id = pairs.tenant_id and item_norms.item_id = pairs.item_id
    inner join norms as neighbor_norms
        on neighbor_norms.tenant_id = pairs.tenant_id and neighbor_norms.item_id = pairs.neighbor_item_id

),

-- equal scores fall to the neighbour's tie_key (a hash of its external id), never its id
ranked as (

    select
        scored.*,
        row_number() over (
            partition by scored.tenant_id, scored.item_id order by scored.score desc, items.tie_key asc
        ) as rank
    from scored
    inner join items
        on items.item_id = scored.neighbor_item_id

),

final as (

    select
        tenant_id,
        item_id,
        neighbor_item_id,
        score,
        support,
        rank::smallint as rank
    from ranked
    where rank <= {{ var('cooc_top_n') | int }}

)

select * from final
