-- The public API for merchants and analysts: experiments, business rules, embedding decisions,
-- the console's reports and the catalog audit, PostgREST-style; the serving side is
-- sql/069_recs.sql (applied first: these may call its id resolvers). Their COMMENT ON text is the
-- API documentation; most are thin wrappers over a pgrecs.* body in the file of its topic.
-------------------------------------------------------------------------------------------------
-- Experiments (sql/060_experiments.sql)
-------------------------------------------------------------------------------------------------

create or replace function recs.assign_variant(experiment text, user_id text)
returns table (experiment_name text, variant text, placement text, is_control boolean,
    bucket double precision)
language sql stable parallel safe
as $$
    select * from pgrecs.assign_variant(assign_variant.experiment, assign_variant.user_id)
$$;
comment on function recs.assign_variant(text, text) is
    'Deterministic variant (and the placement to serve) for a user external id in a running experiment; '
    'no row when the experiment is unknown or not running. Example: '
    'select * from recs.assign_variant(experiment => ''home-v2'', user_id => ''u42'').';

create or replace function recs.experiment_user_outcomes(experiment text, tenant text default null)
returns table (variant text, user_id bigint, impressions bigint, clicks bigint, add_to_carts bigint,
    purchases bigint, revenue double precision, request_attributed_events bigint)
language sql stable parallel safe
as $$
    select * from pgrecs.experiment_user_outcomes(experiment_user_outcomes.experiment, experiment_user_outcomes.tenant)
$$;
comment on function recs.experiment_user_outcomes(text, text) is
    'One row per exposed user and variant (an impression inside the experiment window attributed to the variant) with '
    'outcome counts. An event counts for the variant serving the placement of its request_id '
    '(pgrecs.recommendation_requests) when known, else for the user''s hashed variant; request_attributed_events '
    'counts the former. tenant: the session''s tenant when null (row-level security still applies). Example: '
    'select variant, count(*) from recs.experiment_user_outcomes(experiment => ''home-v2'') group by 1.';

create or replace function recs.experiment_report(
    experiment text, z double precision default 1.959964, tenant text default null
)
returns table (variant text, placement text, is_control boolean, users bigint, impressions bigint,
    clicks bigint, add_to_carts bigint, orders bigint, revenue double precision, ctr double precision,
    ctr_low double precision, ctr_high double precision, conversion double precision,
    conversion_low double precision, conversion_high double precision, revenue_per_user double precision,
    revenue_per_user_low double precision, revenue_per_user_high double precision,
    average_order_value double precision, average_order_value_low double precision,
    average_order_value_high double precision, ctr_vs_control double precision,
    ctr_vs_control_low double precision, ctr_vs_control_high double precision,
    ctr_vs_control_relative double precision, conversion_vs_control double precision,
    conversion_vs_control_low double precision, conversion_vs_control_high double precision,
    conversion_vs_control_relative double precision, revenue_per_user_vs_control double precision,
    revenue_per_user_vs_control_low double precision, revenue_per_user_vs_control_high double precision,
    revenue_per_user_vs_control_relative double precision, average_order_value_vs_control double precision,
    average_order_value_vs_control_low double precision, average_order_value_vs_control_high double precision,
    average_order_value_vs_control_relative double precision)
language sql stable parallel safe
as $$
    select * from pgrecs.experiment_report(experiment_report.experiment, experiment_report.z, experiment_report.tenant)
$$;
comment on function recs.experiment_report(text, double precision, text) is
    'Per-variant results for exposed users with intervals at z (1.96: 95%): CTR (ratio of per-user sums, delta '
    'method), conversion (share of users with a purchase, Wilson), revenue per user (normal) and average order value '
    '(delta method); and for each variant but the control, each metric''s difference against the control '
    '(<metric>_vs_control, with _low, _high and _relative = difference / control value; null with fewer than two '
    'users on a side). tenant: the session''s tenant when null. Example: '
    'select variant, ctr, ctr_vs_control_low, ctr_vs_control_high from recs.experiment_report(experiment => ''home-v2'').';

-------------------------------------------------------------------------------------------------
-- Business rules (sql/062_rules.sql)
-------------------------------------------------------------------------------------------------

create or replace function recs.business_rules()
returns table (rule_id bigint, name text, kind text, placement text, item_id bigint, item_external_id text,
    item_title text, brand text, category text, min_margin numeric, factor real, "position" integer,
    starts_at timestamptz, ends_at timestamptz, enabled boolean, status text, created_at timestamptz,
    changed_at timestamptz, changed_by text)
language sql stable parallel safe
as $$
    select * from pgrecs.business_rules()
$$;
comment on function recs.business_rules() is
    'Every business rule of the tenant with its item, state (live, scheduled, ended, disabled) and last change; live rules first.';

create or replace function recs.create_rule(
    name text,
    kind text,
    placement text default null,
    item text default null,
    brand text default null,
    category text default null,
    min_margin numeric default null,
    factor real default null,
    pin_position integer default null,
    starts_at timestamptz default null,
    ends_at timestamptz default null,
    enabled boolean default true
)
returns bigint
language sql volatile
as $$
    select pgrecs.create_rule(create_rule.name, create_rule.kind, create_rule.placement, create_rule.item, create_rule.brand, create_rule.category, create_rule.min_margin, create_rule.factor, create_rule.pin_position, create_rule.starts_at, create_rule.ends_at, create_rule.enabled)
$$;
comment on function recs.create_rule(text, text, text, text, text, text, numeric, real, integer, timestamptz, timestamptz, boolean) is
    'Adds a business rule and returns its id: a boost (factor > 1 boosts, < 1 demotes), a pin (item at a position) or a block, '
    'matching an item (external id), a brand, a category (any level) and/or a minimum margin, for one placement or all (null), '
    'live inside [starts_at, ends_at) (a campaign). Example: select recs.create_rule(name => ''summer'', kind => ''boost'', '
    'brand => ''Acme'', factor => 1.5, ends_at => now() + interval ''7 days''); a pin: kind => ''pin'', item => ''SKU-1'', pin_position => 1.';

create or replace function recs.update_rule(
    rule_id bigint,
    name text,
    kind text,
    placement text default null,
    item text default null,
    brand text default null,
    category text default null,
    min_margin numeric default null,
    factor real default null,
    pin_position integer default null,
    starts_at timestamptz default null,
    ends_at timestamptz default null,
    enabled boolean default true
)
returns bigint
language sql volatile
as $$
    select pgrecs.update_rule(update_rule.rule_id, update_rule.name, update_rule.kind, update_rule.placement, update_rule.item, update_rule.brand, update_rule.category, update_rule.min_margin, update_rule.factor, update_rule.pin_position, update_rule.starts_at, update_rule.ends_at, update_rule.enabled)
$$;
comment on function recs.update_rule(bigint, text, text, text, text, text, text, numeric, real, integer, timestamptz, timestamptz, boolean) is
    'Replaces every field of a business rule (same arguments as recs.create_rule); raises P0002 for an unknown rule.';

create or replace function recs.set_rule_enabled(rule_id bigint, enabled boolean)
returns boolean
language sql volatile
as $$
    select pgrecs.set_rule_enabled(set_rule_enabled.rule_id, set_rule_enabled.enabled)
$$;
comment on function recs.set_rule_enabled(bigint, boolean) is
    'Enables or disables a business rule; true when it changed, false when it already was so (re-running is safe); P0002 for an unknown rule.';

create or replace function recs.business_rule_changes(rule_id bigint default null, n integer default 100)
returns table (change_id bigint, rule_id bigint, action text, actor text, changed_at timestamptz,
    old_row jsonb, new_row jsonb, changed_fields text[])
language sql stable parallel safe
as $$
    select * from pgrecs.business_rule_changes(business_rule_changes.rule_id, business_rule_changes.n)
$$;
comment on function recs.business_rule_changes(bigint, integer) is
    'The audit trail of business rules, newest first: action, actor (console key or database user), time, old and new row and the fields that changed (set, for an insert or delete).';

create or replace function recs.rule_preview_contexts(
    item text default null,
    brand text default null,
    category text default null,
    n integer default 3
)
returns table (context_kind text, external_id text, title text)
language sql stable parallel safe
as $$
    select * from pgrecs.rule_preview_contexts(rule_preview_contexts.item, rule_preview_contexts.brand, rule_preview_contexts.category, rule_preview_contexts.n)
$$;
comment on function recs.rule_preview_contexts(text, text, text, integer) is
    'Sample contexts for previewing a rule: items with a matching item high in a neighbour list and users with such items in their history (else the most popular items and most active recent users).';

-------------------------------------------------------------------------------------------------
-- Embedding decisions (sql/055_embed_decisions.sql)
-------------------------------------------------------------------------------------------------

create or replace function recs.embed_decision(item text)
returns table (external_id text, title text, embed_override boolean, rule_problem text, decision text,
    problem text)
language sql stable parallel safe
as $$
    select * from pgrecs.embed_decision(embed_decision.item)
$$;
comment on function recs.embed_decision(text) is
    'Whether an item (external id) is embedded and why: the junk-text rule''s verdict (rule_problem), the merchant''s override and the resulting decision; problem is null when it is embedded. Empty when the item is unknown.';

create or replace function recs.set_embed_override(item text, embed boolean)
returns table (external_id text, title text, embed_override boolean, rule_problem text, decision text,
    problem text)
language sql volatile
as $$
    select * from pgrecs.set_embed_override(set_embed_override.item, set_embed_override.embed)
$$;
comment on function recs.set_embed_override(text, boolean) is
    'The merchant''s embedding decision for an item (external id): embed => true embeds it whatever the junk-text rule says, false never embeds it, null hands it back to the rule. Queues the item for embedding; returns recs.embed_decision. Example: select * from recs.set_embed_override(item => ''22727'', embed => true).';

create or replace function recs.embed_overrides(n integer default 50)
returns table (external_id text, title text, embed_override boolean, rule_problem text)
language sql stable parallel safe
as $$
    select * from pgrecs.embed_overrides(embed_overrides.n)
$$;
comment on function recs.embed_overrides(integer) is
    'The items whose embedding the merchant decided (embed_override set), with what the junk-text rule says of them.';

-------------------------------------------------------------------------------------------------
-- Merchant console reports (sql/066_console.sql)
-------------------------------------------------------------------------------------------------

create or replace function recs.catalog_overview()
returns table (items bigint, active_items bigint, in_stock_items bigint, embedded_items bigint,
    embedded_share double precision, embedding_model text, users bigint, events bigint,
    first_event_at timestamptz, last_event_at timestamptz, mean_quality_score double precision,
    rules_live bigint, placements bigint)
language sql stable parallel safe
as $$
    select * from pgrecs.catalog_overview()
$$;
comment on function recs.catalog_overview() is
    'Catalog size (all, active, in stock), active items embedded by the default model and their share, users, events and their time span, mean quality score, live rules, placements.';

create or replace function recs.quality_histogram(bins integer default 10)
returns table (bin integer, low double precision, high double precision, items bigint)
language sql stable parallel safe
as $$
    select * from pgrecs.quality_histogram(quality_histogram.bins)
$$;
comment on function recs.quality_histogram(integer) is
    'Items per quality-score bin (equal-width bins over [0, 1], a score of 1 in the last bin), from the published audit scores (pgrecs.item_signals).';

create or replace function recs.events_per_day(days integer default 30)
returns table (day date, event_type text, events bigint)
language sql stable parallel safe
as $$
    select * from pgrecs.events_per_day(events_per_day.days)
$$;
comment on function recs.events_per_day(integer) is
    'Events per UTC day and type over the last `days` days up to the tenant''s latest event.';

create or replace function recs.placement_performance(days integer default 7)
returns table (placement text, requests bigint, served bigint, clicks bigint, purchases bigint,
    ctr double precision, conversion double precision, last_request_at timestamptz)
language sql stable parallel safe
as $$
    select * from pgrecs.placement_performance(placement_performance.days)
$$;
comment on function recs.placement_performance(integer) is
    'Per placement over the last `days` days of served lists (pgrecs.recommendation_requests): requests, items served, '
    'clicks and purchases of listed items citing the request id, CTR (clicks per item served) and conversion '
    '(share of requests followed by such a purchase).';

create or replace function recs.exposure(days integer default 30)
returns table (requests bigint, active_items bigint, items_shown bigint, catalog_coverage double precision,
    exposures bigint, never_shown bigint, gini_items double precision, gini_brands double precision,
    gini_categories double precision, mean_popularity_percentile double precision,
    top_decile_share double precision, brands bigint, categories bigint)
language sql stable parallel safe
as $$
    select * from pgrecs.exposure(exposure.days)
$$;
comment on function recs.exposure(integer) is
    'How exposure is spread over the active catalog in the lists served over the last `days` days: requests, items shown and the '
    'catalog share they are, item slots served, items never shown, Gini of exposure over items, brands and top-level categories '
    '(0 even, towards 1 concentrated), and popularity bias: the exposure-weighted mean popularity percentile of what was served '
    '(0.5 for an unbiased draw, 1 for only the most popular), the share of exposure going to the 10% most popular items, '
    'and how many brands and categories the active catalog has (a Gini over one group is 0).';

create or replace function recs.exposure_curve(days integer default 30, points integer default 20)
returns table (item_share double precision, exposure_share double precision)
language sql stable parallel safe
as $$
    select * from pgrecs.exposure_curve(exposure_curve.days, exposure_curve.points)
$$;
comment on function recs.exposure_curve(integer, integer) is
    'The Lorenz curve of exposure over the active items in the lists served over the last `days` days, in about `points` steps: '
    'the least exposed item_share of the catalog received exposure_share of all exposure (the diagonal is perfectly even).';

create or replace function recs.exposure_by(dimension text default 'brand', days integer default 30, n integer default 20)
returns table (grp text, items bigint, exposures bigint, exposure_share double precision, catalog_share double precision)
language sql stable parallel safe
as $$
    select * from pgrecs.exposure_by(exposure_by.dimension, exposure_by.days, exposure_by.n)
$$;
comment on function recs.exposure_by(text, integer, integer) is
    'Exposure per brand (dimension => ''brand'') or top-level category (any other value) over the last `days` days: active items, '
    'item slots served, share of all exposure and share of the catalog; the n most exposed.';

create or replace function recs.never_shown_items(days integer default 30, n integer default 20)
returns table (item_id bigint, external_id text, title text, brand text, popularity double precision)
language sql stable parallel safe
as $$
    select * from pgrecs.never_shown_items(never_shown_items.days, never_shown_items.n)
$$;
comment on function recs.never_shown_items(integer, integer) is
    'Active items on no list served over the last `days` days, the most popular first.';

create or replace function recs.not_embeddable_items(n integer default 20)
returns table (item_id bigint, external_id text, title text, model text, reason text, recorded_at timestamptz)
language sql stable parallel safe
as $$
    select * from pgrecs.not_embeddable_items(not_embeddable_items.n)
$$;
comment on function recs.not_embeddable_items(integer) is
    'Items whose text is too poor to embed, per model, with the reason (pgrecs.not_embeddable).';

create or replace function recs.item_details(item text)
returns table (item_id bigint, external_id text, title text, description text, brand text,
    category_path text[], attributes jsonb, price numeric, currency text, stock integer, margin numeric,
    image_url text, active boolean, created_at timestamptz, updated_at timestamptz, clean_title text,
    clean_description text, embedding_text text, text_problem text, popularity double precision,
    trending double precision, quality_score double precision, quality_flags text[], events bigint)
language sql stable parallel safe
as $$
    select * from pgrecs.item_details(item_details.item)
$$;
comment on function recs.item_details(text) is
    'One item (external id) as stored and as cleaned: raw and cleaned title and description, the composed text embedded and why it would be refused, signals, quality and event count.';

create or replace function recs.item_embedding_status(item text)
returns table (model text, is_default boolean, status text, embedded_at timestamptz, truncated boolean,
    queued_at timestamptz, reason text)
language sql stable parallel safe
as $$
    select * from pgrecs.item_embedding_status(item_embedding_status.item)
$$;
comment on function recs.item_embedding_status(text) is
    'Per embedding model, the state of one item''s embedding: current, stale (its text changed since), queued, missing or not embeddable (with the reason).';

create or replace function recs.experiments()
returns table (name text, description text, status text, started_at timestamptz, stopped_at timestamptz,
    variants jsonb)
language sql stable parallel safe
as $$
    select * from pgrecs.experiments()
$$;
comment on function recs.experiments() is
    'The tenant''s experiments, running first, with their variants (placement, allocation, control).';

create or replace function recs.placements()
returns table (placement text, description text, weights jsonb, default_filters jsonb, fusion text,
    mmr_lambda real, max_per_brand integer, max_per_category integer, updated_at timestamptz)
language sql stable parallel safe
as $$
    select * from pgrecs.placements()
$$;
comment on function recs.placements() is
    'The tenant''s placements with their signal weights, default filters, fusion, diversity and caps.';

-------------------------------------------------------------------------------------------------
-- One user, the catalog audit and the items to fix first
-------------------------------------------------------------------------------------------------

-- The audit marts (dbt, schema recs_marts) carry no row-level security: dbt rebuilds them. These
-- two read them as their owner for the tenant in pgrecs.tenant only, and return nothing when it
-- is unset or the marts were not built yet (`pgrecs refresh` builds them).
create or replace function recs.catalog_audit_summary()
returns jsonb
language plpgsql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    t text := nullif(current_setting('pgrecs.tenant', true), '');
    summary jsonb;
begin
    if t is null then
        return null;
    end if;
    select to_jsonb(a) - 'tenant_id' into summary
    from recs_marts.fct_catalog_audit_summary a
    where a.tenant_id = t;
    return summary;
exception when undefined_table then
    return null;
end
$$;
comment on function recs.catalog_audit_summary() is
    'The catalog audit (recs_marts.fct_catalog_audit_summary) of the tenant in pgrecs.tenant as one JSON object: counts of every finding, mean and 10th percentile quality; null when the tenant is unset or the audit was not built.';

create or replace function recs.catalog_audit_items(n integer default 20, flag text default null)
returns table (item_id bigint, external_id text, title text, quality_score numeric, quality_flags text[],
    same_title_items integer, nearest_item_id bigint, nearest_external_id text, nearest_title text,
    nearest_similarity double precision)
language plpgsql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    t text := nullif(current_setting('pgrecs.tenant', true), '');
begin
    if t is null then
        return;
    end if;
    return query
    select a.item_id, a.external_id, a.title, a.quality_score, a.quality_flags, a.same_title_items::integer,
           a.nearest_item_id, ni.external_id, ni.title, a.nearest_similarity::float8
    from recs_marts.fct_item_audit a
    left join pgrecs.items ni on ni.item_id = a.nearest_item_id and ni.tenant_id = t
    where a.tenant_id = t
      and (flag is null or flag = any(a.quality_flags))
    order by case when flag = 'near_duplicate_title' then -a.nearest_similarity end nulls last,
             case when flag = 'duplicate_title' then a.title end, a.quality_score, a.item_id
    limit n;
exception when undefined_table then
    return;
end
$$;
comment on function recs.catalog_audit_items(integer, text) is
    'The n lowest-quality items of the audit (recs_marts.fct_item_audit) of the tenant in pgrecs.tenant, with their flags, how many other items share their exact title, and the most similar other title; '
    'flag => ''near_duplicate_title'' (or any flag) keeps the items with that flag (duplicates ordered by similarity). Nothing when the tenant is unset or the audit was not built.';

revoke all on function recs.catalog_audit_summary() from public;
revoke all on function recs.catalog_audit_items(integer, text) from public;

create or replace function recs.user_history(user_id text, placement text default 'home_for_you')
returns table (recency_rank integer, item_id bigint, external_id text, title text, weight real, label text, purchased boolean)
language sql stable parallel safe
as $$
    select h.recency_position, h.item_id, i.external_id, i.title, h.weight, h.label, h.purchased
    from pgrecs.users u
    cross join lateral pgrecs.user_history(u.user_id, user_history.placement)
        with ordinality as h (item_id, weight, label, purchased, recency_position, ord)
    join pgrecs.items i on i.item_id = h.item_id
    where u.tenant_id = pgrecs.current_tenant()
      and u.external_id = user_history.user_id
    order by h.ord
$$;
comment on function recs.user_history(text, text) is
    'A user''s history as the placement''s scorer reads it (pgrecs.user_history: event-type weights, recency decay, top items), most recent first, with titles.';
-- The items to fix first: those with an actionable audit finding, most traffic first, for the
-- audit report (`pgrecs audit`) and the console's catalog-health page. It reads the audit through
-- recs.catalog_audit_items (the tenant in pgrecs.tenant only), so it needs no privileges of its own.

create or replace function recs.catalog_fix_first(n integer default 20)
returns table (item_id bigint, external_id text, title text, quality_score numeric, quality_flags text[],
    events bigint)
language sql stable
as $$
    with audited as (
        select a.item_id, a.external_id, a.title, a.quality_score,
               -- mojibake is repaired already: informational, nothing to fix
               array(select f from unnest(a.quality_flags) as f where f <> 'mojibake') as flags
        from recs.catalog_audit_items(n => 2147483647) a
    ),
    traffic as (
        select e.item_id, count(*) as events
        from pgrecs.events e
        where e.tenant_id = pgrecs.current_tenant()
        group by e.item_id
    )
    select a.item_id, a.external_id, a.title, a.quality_score, a.flags, coalesce(tr.events, 0)
    from audited a
    left join traffic tr on tr.item_id = a.item_id
    where cardinality(a.flags) > 0
    order by coalesce(tr.events, 0) desc, a.quality_score, a.item_id
    limit catalog_fix_first.n
$$;
comment on function recs.catalog_fix_first(integer) is
    'The n items of the tenant in pgrecs.tenant with an audit finding to fix (every flag but the repaired mojibake), ordered by their traffic (events), then lowest quality: where a fix reaches the most shoppers. Nothing when the tenant is unset or the audit was not built.';
