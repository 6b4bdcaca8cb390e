-- Per item: the Euclidean norm of its basket-weight vector and the number of baskets it is in.
with

basket_items as (

    select * from {{ ref('int_basket_items_weighted') }}

),

final as (

    select
        tenant_id,
        item_id,
        sqrt(sum(weight * weight)) as norm,
        count(*) as baskets
    from basket_items
    group by tenant_id, item_id

)

select * from final
