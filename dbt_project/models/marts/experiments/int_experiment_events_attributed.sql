-- Every event inside an experiment's window, attributed to one variant of that experiment.
-- Attribution (the same rule as recs.experiment_user_outcomes in sql/060_experiments.sql):
--   1. request: the event's request_id names a served list (pgrecs.recommendation_requests) whose
--      placement is a variant's placement; when several variants serve that placement, the user's
--      hashed variant wins if it is one of them, else the lowest position.
--   2. hash: otherwise the variant recs.assign_variant gives the user (md5 of salt:external id).
with

experiments as (

    select
        experiment_id,
        tenant_id,
        salt,
        started_at,
        coalesce(stopped_at, 'infinity'::timestamptz) as stopped_at
    from {{ source('pgrecs_experiments', 'experiments') }}

),

variants as (

    select * from {{ source('pgrecs_experiments', 'experiment_variants') }}

),

requests as (

    select request_id::text as request_key, tenant_id, placement
    from {{ source('pgrecs_experiments', 'recommendation_requests') }}

),

users as (

    select * from {{ source('pgrecs_experiments', 'users') }}

),

window_events as (

    select
        experiments.experiment_id,
        experiments.salt,
        events.event_id,
        events.tenant_id,
        events.user_id,
        users.external_id as user_key,
        events.event_type,
        events.value,
        events.occurred_at,
        nullif(btrim(events.request_id), '') as request_key
    from experiments
    inner join {{ source('pgrecs_experiments', 'events') }} as events
        on events.tenant_id = experiments.tenant_id
        and events.occurred_at >= experiments.started_at
        and events.occurred_at < experiments.stopped_at
    inner join users on users.user_id = events.user_id

),

hashed as (

    select
        window_events.*,
        pgrecs.variant_for_bucket(
            window_events.experiment_id, pgrecs.hash_bucket(window_events.salt, window_events.user_key)
        ) as hash_variant_id
    from window_events

),

by_request as (

    select distinct on (hashed.event_id, hashed.experiment_id)
        hashed.event_id,
        hashed.experiment_id,
        variants.variant_id as request_variant_id
    from hashed
    inner join requests
        on requests.request_key = hashed.request_key
        and requests.tenant_id = hashed.tenant_id
    inner join variants
        on variants.experiment_id = hashed.experiment_id
        and variants.placement = requests.placement
    order by
        hashed.event_id,
        hashed.experiment_id,
        (variants.variant_id = hashed.hash_variant_id) desc,
        variants.position

),

final as (

    select
        hashed.experiment_id,
        coalesce(by_request.request_variant_id, hashed.hash_variant_id) as variant_id,
        hashed.tenant_id,
        hashed.event_id,
        hashed.user_id,
        hashed.event_type,
        hashed.value,
        hashed.occurred_at,
        hashed.request_key as request_id,
        case when by_request.request_variant_id is not null then 'request' else 'hash' end as attributed_by
    from hashed
    left join by_request
        on by_request.event_id = hashed.event_id
        and by_request.experiment_id = hashed.experiment_id

)

select * from final
