-- The same item list with the placement's rules and with them neutralised: filters widened,
-- no diversity, no caps. Business rules (boosts, pins, blocks) show up in the reasons column.
-- Runs inside a transaction that is rolled back, so the placement is unchanged afterwards.
begin;

create temporary table with_rules on commit drop as
select rank, external_id, reasons
from recs.recommend_for_item(item => :'item', k => 10, placement => 'pdp_similar');

update pgrecs.placements
set mmr_lambda = 1, max_per_brand = null, max_per_category = null, default_filters = '{}'
where tenant_id = pgrecs.current_tenant() and placement = 'pdp_similar';

select coalesce(w.rank, r.rank) as rank,
       w.external_id as with_rules,
       r.external_id as without_rules,
       array_to_string(w.reasons, '; ') as reasons_with_rules
from with_rules w
full join (
    select rank, external_id
    from recs.recommend_for_item(item => :'item', k => 10, placement => 'pdp_similar')
) r on r.rank = w.rank
order by 1;

rollback;
