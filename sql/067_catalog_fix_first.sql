-- The items to fix first: those with an actionable audit finding, most traffic first, for the
-- audit report (`pgrecs audit`) and the console's catalog-health page. It reads the audit through
-- recs.catalog_audit_items (the tenant in pgrecs.tenant only), so it needs no privileges of its own.

create or replace function recs.catalog_fix_first(n integer default 20)
returns table (item_id bigint, external_id text, title text, quality_score numeric, quality_flags text[],
               events bigint)
language sql
stable
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
