-- Join the explanations: one row per item and signal, with the anchor item behind it.
select r.rank, r.external_id, s.key as signal,
       round((s.value ->> 'contribution')::numeric, 4) as contribution,
       round((s.value ->> 'raw')::numeric, 4) as raw,
       s.value ->> 'anchor_external_id' as anchor,
       s.value ->> 'anchor_title' as anchor_title
from recs.recommend_for_item(item => :'item', k => 10, explain => true) r
cross join lateral jsonb_each(r.contributions) s
where s.key not like '\_%'
order by r.rank, contribution desc;
