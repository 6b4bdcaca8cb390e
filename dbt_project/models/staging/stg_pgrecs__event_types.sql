-- Event weights: pgrecs.event_types.default_weight unless var('event_weights') names the type.
{%- set overrides = var('event_weights') or {} %}
with

source as (

    select * from {{ source('pgrecs', 'event_types') }}

),

final as (

    select
        event_type,
        default_weight,
        coalesce(
            ({{ dbt.string_literal(tojson(overrides)) }}::jsonb ->> event_type)::double precision,
            default_weight
        )::double precision as weight,
        description
    from source

)

select * from final
