{{ config(
    pre_hook=["set work_mem = '256MB'"],
    post_hook=["reset work_mem"],
) }}
-- Top var cooc_top_n next items per item: what users went on to after engaging with it.
--
-- Each user's positive events (weight > 0) form tie groups, one per timestamp (every line of an
-- invoice, a day of reviews): the order of rows inside a group is no order of the journey. A step
-- goes from each item of one group to each item of the user's next strictly later group, weighted
-- 1 / (|group| x |next group|) so a big basket does not outweigh a single purchase; a repeat of
-- the same item is no step.
--   score(i, j) = steps(i -> j) / (steps(i -> any) + var sequence_shrinkage)
-- the share of the steps out of i that went to j, pulled towards zero for items with few steps;
-- ties in the rank fall to the neighbour's tie_key (a hash of its external id).
-- Directed and local, unlike co-occurrence (symmetric over the whole basket): it carries the
-- order of a user's journey, the strongest hint of what comes next.
-- A global model (every step of every user): `pgrecs refresh` builds it on full refreshes and
-- with --sequence, not on incremental ones.
with

events as (

    select * from {{ ref('stg_pgrecs__events') }}
    where weight > 0

),

items as (

    select item_id, tie_key from {{ ref('stg_pgrecs__items') }}

),

tie_groups as (

    -- one sort of the events serves both the distinct items and their order
    select
        tenant_id,
        user_id,
        occurred_at,
        array_agg(distinct item_id order by item_id) as items
    from events
    group by tenant_id, user_id, occurred_at

),

consecutive as (

    select
        tenant_id,
        items,
        lead(items) over (partition by tenant_id, user_id order by occurred_at) as next_items
    from tie_groups

),

steps as (

    select
        c.tenant_id,
        a.item_id,
        b.item_id as neighbor_item_id,
        cardinality(c.items) * cardinality(c.next_items) as group_product
    from consecutive as c
    cross join lateral unnest(c.items) as a (item_id)
    cross join lateral unnest(c.next_items) as b (item_id)
    where c.next_items is not null
      and a.item_id <> b.item_id

),

steps_per_product as (

    -- steps counted in bigint per group product: integer sums, cheap and order-independent
    select tenant_id, item_id, neighbor_item_id, group_product, count(*) as steps
    from steps
    group by tenant_id, item_id, neighbor_item_id, group_product

),

counted as (

    -- each step weighs 1 / group_product; numeric keeps the sum exact (the same value and
    -- scale as a sum of one such weight per step, since n x (1 / p) is exact in numeric)
    select
        tenant_id,
        item_id,
        neighbor_item_id,
        sum(steps * (1.0::numeric / group_product)) as steps
    from steps_per_product
    group by tenant_id, item_id, neighbor_item_id

),

scored as (

    select
        counted.tenant_id,
        counted.item_id,
        counted.neighbor_item_id,
        counted.steps::double precision as steps,
        (counted.steps
            / (sum(counted.steps) over per_item + {{ var('sequence_shrinkage') | float }}))::double precision as score,
        row_number() over (per_item order by counted.steps desc, items.tie_key asc) as rank
    from counted
    join items on items.item_id = counted.neighbor_item_id
    window per_item as (partition by counted.tenant_id, counted.item_id)

),

final as (

    select tenant_id, item_id, neighbor_item_id, steps, score, rank
    from scored
    where rank <= {{ var('cooc_top_n') | int }}

)

select * from final
