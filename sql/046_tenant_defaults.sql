-- What a new tenant starts with: the default placements (pgrecs.placement_defaults, data kept by
-- migrations) copied for it when its row in pgrecs.tenants is created, so the first call of
-- recs.recommend_for_item or GET /items/X/recommendations of a new shop finds its placements.

create or replace function pgrecs.ensure_default_placements(tenant text)
returns integer
language sql
volatile
-- the owner sees every tenant when pgrecs.tenant is empty (sql/070_security.sql): the rows may be
-- for a tenant other than the caller's session tenant
set "pgrecs.tenant" = ''
as $$
    with added as (
        insert into pgrecs.placements (
            tenant_id, placement, description, weights, pool_sizes, default_filters, fusion, rrf_k,
            mmr_lambda, mmr_pool_factor, max_per_brand, max_per_category, category_level, allow_repeats,
            history_limit, history_events, history_half_life, event_weights, negative_weight,
            quality_threshold, quality_penalty
        )
        select ensure_default_placements.tenant, d.placement, d.description, d.weights, d.pool_sizes,
               d.default_filters, d.fusion, d.rrf_k, d.mmr_lambda, d.mmr_pool_factor, d.max_per_brand,
               d.max_per_category, d.category_level, d.allow_repeats, d.history_limit, d.history_events,
               d.history_half_life, d.event_weights, d.negative_weight, d.quality_threshold, d.quality_penalty
        from pgrecs.placement_defaults as d
        on conflict (tenant_id, placement) do nothing
        returning 1
    )
    select count(*)::integer from added
$$;
comment on function pgrecs.ensure_default_placements(text) is
    'Adds the default placements (pgrecs.placement_defaults) a tenant lacks and returns how many; never changes '
    'an existing placement, so it is safe to call again. Runs when a tenant is created.';

create or replace function pgrecs.tenants_seed_defaults()
returns trigger
language plpgsql
as $$
begin
    perform pgrecs.ensure_default_placements(new.tenant_id);
    return null;
end
$$;
comment on function pgrecs.tenants_seed_defaults() is
    'Trigger on pgrecs.tenants: a new tenant gets the default placements.';

create or replace trigger tenants_seed_defaults
    after insert on pgrecs.tenants
    for each row execute function pgrecs.tenants_seed_defaults();
