{{ config(
    pre_hook=["set work_mem = '256MB'"],
    post_hook=["reset work_mem"],
) }}
-- Top var cooc_top_n next items per item: what users went on to after engaging with it.
--
-- Each user's positive events (weight > 0) in time order (ties by load order, event_id); a step
-- is a pair of consecutive events on different items (a repeat of the same item is not a step).
--   score(i, j) = steps(i -> j) / (steps(i -> any) + var sequence_shrinkage)
-- the share of the steps out of i that went to j, pulled towards zero for items with few steps.
-- Directed and local, unlike co-occurrence (symmetric over the whole basket): it carries the
-- order of a user's journey, the strongest hint of what comes next.
-- A global model (every step of every user): `pgrecs refresh` builds it on full refreshes and
-- with --sequence, not on incremental ones.
with

events as (

    select * from {{ ref('stg_pgrecs__events') }}
    where weight > 0

),

steps as (

    select
        tenant_id,
        lag(item_id) over (
            partition by tenant_id, user_id order by occurred_at, event_id
        ) as item_id,
        item_id as neighbor_item_id
    from events

),

counted as (

    select tenant_id, item_id, neighbor_item_id, count(*) as steps
    from steps
    where item_id is not null and item_id <> neighbor_item_id
    group by tenant_id, item_id, neighbor_item_id

),

scored as (

    select
        tenant_id,
        item_id,
        neighbor_item_id,
        steps,
        steps::double precision
            / (sum(steps) over per_item + {{ var('sequence_shrinkage') | float }}) as score,
        row_number() over (per_item order by steps desc, neighbor_item_id) as rank
    from counted
    window per_item as (partition by tenant_id, item_id)

),

final as (

    select tenant_id, item_id, neighbor_item_id, steps, score, rank
    from scored
    where rank <= {{ var('cooc_top_n') | int }}

)

select * from final
