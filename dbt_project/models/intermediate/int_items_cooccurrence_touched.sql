-- The items whose co-occurrence list must be (re)computed in this run.
-- Full refresh (dbt --full-refresh, var full_refresh, or no refresh state yet for the tenant):
-- every item with interactions, plus every item with a published list (so stale lists are cleared).
-- Incremental: the items in the baskets rebuilt since pgrecs.refresh_state (the user baskets of
-- users, and the session baskets of sessions, with new events: their pair sums and norms changed), plus the items whose published list contains one of them
-- (the neighbour's norm changed, so its score did). See README: eviction by the basket cap and
-- the sliding window are applied to other items' lists at the next full refresh.
{%- set full = flags.FULL_REFRESH or var('full_refresh', false) %}
with

state as (

    select tenant_id, last_event_id from {{ source('pgrecs', 'refresh_state') }}

),

basket_items as not materialized (

    select * from {{ ref('int_basket_items_weighted') }}

),

published as materialized (

    -- one scan of the co-occurrence lists, hashed against the changed items (per changed item
    -- the reverse index would visit every signal's rows)
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
    -- read by the where clause of an incremental build (the linter renders a full one, hence the noqa)
    left join state on state.tenant_id = tenants.tenant_id  -- noqa: ST11
    {%- if not full %}
    where state.last_event_id is null
    {%- endif %}

),

changed_baskets as materialized (

    -- the baskets rebuilt since the last published refresh: the user baskets of the users, and
    -- the session baskets of the sessions, with rows newer than the mark (index range scans)
    select distinct changed.tenant_id, changed.user_id as basket_id
    from state
    cross join lateral (
        select user_items.tenant_id, user_items.user_id
        from {{ ref('int_user_items_aggregated') }} as user_items
        where user_items.tenant_id = state.tenant_id
            and user_items.last_event_id > state.last_event_id
        offset 0
    ) as changed
    union
    select changed.tenant_id, changed.basket_id
    from state
    cross join lateral (
        select session_items.tenant_id, session_items.basket_id
        from {{ ref('int_session_items_aggregated') }} as session_items
        where session_items.tenant_id = state.tenant_id
            and session_items.last_event_id > state.last_event_id
        offset 0
    ) as changed

),

changed_items as materialized (

    select distinct basket_items.tenant_id, basket_items.item_id
    from changed_baskets
    cross join lateral (
        select basket_items.tenant_id, basket_items.item_id
        from basket_items
        where basket_items.tenant_id = changed_baskets.tenant_id
            and basket_items.basket_id = changed_baskets.basket_id
        offset 0  -- one index lookup per basket
    ) as basket_items

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
