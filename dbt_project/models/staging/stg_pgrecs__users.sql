with

source as (

    select * from {{ source('pgrecs', 'users') }}

),

final as (

    select
        user_id,
        tenant_id,
        external_id,
        attributes,
        created_at
    from source

)

select * from final
