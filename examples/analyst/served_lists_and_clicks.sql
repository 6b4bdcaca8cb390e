-- Served lists and the events that referenced them (click-through per placement, last 7 days).
select q.placement,
       count(distinct q.request_id) as lists_served,
       count(e.event_id) filter (where e.event_type = 'click') as clicks,
       count(e.event_id) filter (where e.event_type = 'purchase') as purchases
from pgrecs.recommendation_requests q
left join pgrecs.events e on e.request_id = q.request_id::text and e.tenant_id = q.tenant_id
where q.tenant_id = pgrecs.current_tenant()
  and q.created_at > now() - interval '7 days'
group by q.placement
order by q.placement;
