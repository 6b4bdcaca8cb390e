-- Top 10 next to one item (by external id), joined to the catalog for titles and prices.
select r.rank, r.external_id, i.title, i.brand, i.price, round(r.score::numeric, 4) as score,
       r.contributions
from recs.recommend_for_item(item => :'item', k => 10, placement => 'pdp_similar') r
join pgrecs.items i on i.item_id = r.item_id
order by r.rank;
