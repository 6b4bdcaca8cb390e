-- A user's interests read live from the event log: the anchors of recs.recommend_for_user.

create or replace function pgrecs.user_history(uid bigint, placement_name text)
returns table (item_id bigint, weight real, label text, purchased boolean, recency_position integer)
language sql
stable parallel safe
as $$
    -- the top history_limit items by weight, returned most recent first (by each item's latest
    -- event); items whose latest events share a timestamp share a recency position (the order of
    -- rows inside a tie is no order of the journey), and ties anywhere fall to items.tie_key
    with p as (
        select * from pgrecs.placement_row(placement_name)
    ),
    recent as (
        select e.item_id, e.event_type, e.occurred_at, e.event_id,
               coalesce((p.event_weights ->> e.event_type)::double precision, et.default_weight)
                 -- decay relative to the user's latest event, not now(): a history from years ago
                 -- keeps its internal order instead of decaying to nothing
                 * exp(-ln(2) * least(extract(epoch from e.latest_at - e.occurred_at)
                       / greatest(extract(epoch from p.history_half_life), 1), 700)) as w,
               coalesce((p.event_weights ->> e.event_type)::double precision, et.default_weight) as type_weight
        from p
        cross join lateral (
            select ev.item_id, ev.event_type, ev.occurred_at, ev.event_id,
                   max(ev.occurred_at) over () as latest_at
            from pgrecs.events ev
            where ev.tenant_id = pgrecs.current_tenant()
              and ev.user_id = uid
              -- the latest history_events events, whole timestamps: all events at the cut's moment
              and ev.occurred_at >= coalesce((
                  select e2.occurred_at from pgrecs.events e2
                  where e2.tenant_id = pgrecs.current_tenant()
                    and e2.user_id = uid
                  order by e2.occurred_at desc
                  offset greatest(p.history_events - 1, 0) limit 1), '-infinity')
        ) e
        join pgrecs.event_types et on et.event_type = e.event_type
    ),
    top as (
        -- sums in value order: the same digits whatever order the events were stored in
        select r.item_id,
               greatest(sum(r.w order by r.w), 1e-30)::real as weight,
               case (array_agg(r.event_type order by r.type_weight desc, r.event_type))[1]
                   when 'purchase' then ' you bought'
                   when 'add_to_cart' then ' you added to your cart'
                   when 'rating' then ' you rated'
                   when 'click' then ' you clicked'
                   else ' you viewed'
               end as label,
               bool_or(r.event_type = 'purchase') as purchased,
               -- recency from the events that count (an impression is no step of the journey)
               max(r.occurred_at) filter (where r.w > 0) as last_at
        from recent r
        join pgrecs.items i on i.item_id = r.item_id
        group by r.item_id, i.tie_key
        having sum(r.w order by r.w) > 0
        order by sum(r.w order by r.w) desc, i.tie_key
        limit (select p.history_limit from p)
    )
    select top.item_id, top.weight, top.label, top.purchased,
           dense_rank() over (order by top.last_at desc)::integer
    from top
    join pgrecs.items i on i.item_id = top.item_id
    order by top.last_at desc, i.tie_key
$$;
comment on function pgrecs.user_history(bigint, text) is
    'A user''s interests read live from pgrecs.events: the most recent events weighted by event type (placement overrides) and exponential recency decay, summed per item; the top history_limit items, most recent first, with their recency position (items last seen at one timestamp share one).';
