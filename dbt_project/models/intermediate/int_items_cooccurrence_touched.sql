-- The items whose co-occurrence list must be (re)computed in this run.
-- Full refresh (dbt --full-refresh, var full_refresh, or no refresh state yet for the tenant):
-- every item with interactions, plus every item with a published list (so stale lists are cleared).
-- Incremental: the items in the baskets of users with events newer than pgrecs.refresh_state
-- (their pair sums and norms changed), plus the items whose published list contains one of them
-- (the neighbour's norm changed, so its score did). See README: eviction by the basket cap and
-- the sliding window are applied to other items' lists at the next full refresh.
{%- set full = flags.FULL_REFRESH or var('full_refresh', false) %}
with

state as (

    select tenant_id, last_event_id from {{ source('pgrecs', 'refresh_state') }}

),

basket_items as (

    select * from {{ ref('int_basket_items_weighted') }}

),

published as (

    select tenant_id, item_id, neighbor_item_id
    from {{ source('pgrecs', 'item_neighbors') }}
    where signal = 'cooccurrence'

),

tenants as (

    select tenant_id from {{ source('pgrecs', 'tenants') }}

),

full_tenants as (

    select tenants.tenant_id
    from tenants
    left join state on state.tenant_id = tenants.tenant_id
    {%- if not full %}
    where state.last_event_id is null
    {%- endif %}

),

new_users as (

    select distinct events.tenant_id, events.user_id
    from {{ source('pgrecs', 'events') }} as events
    inner join state on state.tenant_id = events.tenant_id
    where events.event_id > state.last_event_id

),

changed_items as (

    select distinct basket_items.tenant_id, basket_items.item_id
    from basket_items
    inner join new_users
        on new_users.tenant_id = basket_items.tenant_id
        and new_users.user_id = basket_items.user_id

),

listing_changed as (

    select published.tenant_id, published.item_id
    from published
    inner join changed_items
        on changed_items.tenant_id = published.tenant_id
        and changed_items.item_id = published.neighbor_item_id

),

everything_in_full_tenants as (

    select basket_items.tenant_id, basket_items.item_id
    from basket_items
    inner join full_tenants on full_tenants.tenant_id = basket_items.tenant_id
    union
    select published.tenant_id, published.item_id
    from published
    inner join full_tenants on full_tenants.tenant_id = published.tenant_id

),

final as (

    select tenant_id, item_id from changed_items
    union
    select tenant_id, item_id from listing_changed
    union
    select tenant_id, item_id from everything_in_full_tenants

)

select * from final
