-- Training pairs for fine-tuning an embedding model on the shop's own logs (`pgrecs models
-- finetune`): pairs of items the event log says belong together, both with embeddable text.
--
-- Sources (each scored on its own, then merged):
--   basket        items in the same session or basket (events that carry a session id)
--   coengagement  items engaged by the same user (each user's most recent distinct items)
--   sequence      next-item steps: from each item of a user's tie group (one timestamp) to each
--                 item of the next strictly later group, weighted 1 / (|group| x |next group|),
--                 so neither the order of rows inside a tie nor a big group decides anything
-- basket and coengagement: strength = cosine of the items' basket incidence x n / (n + shrinkage)
-- (n = baskets holding both), as co-occurrence scores them, so best-sellers do not top every
-- list; sequence: strength = the larger of steps(a -> b) / (steps(a -> any) + shrinkage) and the
-- reverse.
-- Cap per item: a pair is kept only when it ranks among the per_item strongest pairs of both its
-- items (in its source), so no item takes part in more than per_item pairs of a source. The
-- budget is spent breadth first: every item's best pair before any item's second.

create or replace function pgrecs.finetune_pairs(
    before timestamptz default null,
    sources text[] default array['basket', 'sequence', 'coengagement'],
    per_item integer default 5,
    max_pairs integer default 10000,
    shrinkage double precision default 2,
    max_basket_items integer default 20
)
returns table (anchor_item_id bigint, positive_item_id bigint, source text, strength double precision,
               pair_rank integer, anchor_text text, positive_text text)
language sql
stable parallel safe
-- pair counting and ranking sort millions of rows on a large shop (UCI Online Retail: 14M pair rows)
set work_mem = '256MB'
as $$
    with
    embeddable as materialized (
        select i.item_id, t.txt
        from pgrecs.items as i
        cross join lateral (
            select pgrecs.compose_item_text(i.title, i.description, i.brand, i.category_path, i.attributes) as txt
        ) as t
        where i.tenant_id = pgrecs.current_tenant()
          and i.active
          and pgrecs.item_embed_problem(t.txt, i.embed_override) is null
    ),
    windowed as materialized (
        select e.user_id, e.item_id, nullif(btrim(e.session_id), '') as session_id, e.occurred_at
        from pgrecs.events as e
        inner join pgrecs.event_types as et on et.event_type = e.event_type
        inner join embeddable as x on x.item_id = e.item_id
        where e.tenant_id = pgrecs.current_tenant()
          and et.default_weight > 0
          and (finetune_pairs.before is null or e.occurred_at < finetune_pairs.before)
    ),
    basket_items as (
        -- ranked by recency (ties by item id) and capped at max_basket_items per basket; each row
        -- carries its item's basket count (a join to a count table is planned as a nested loop:
        -- the planner cannot estimate the embeddable items)
        select b.source, b.basket, b.item_id, count(*) over (partition by b.source, b.item_id) as baskets
        from (
            select 'basket'::text as source, hashtextextended(w.user_id::text || ' ' || w.session_id, 0) as basket,
                   w.item_id,
                   row_number() over (partition by w.user_id, w.session_id
                                      order by max(w.occurred_at) desc, w.item_id desc) as recency
            from windowed as w
            where w.session_id is not null
              and 'basket' = any(finetune_pairs.sources)
            group by w.user_id, w.session_id, w.item_id
            union all
            select 'coengagement', w.user_id, w.item_id,
                   row_number() over (partition by w.user_id order by max(w.occurred_at) desc, w.item_id desc)
            from windowed as w
            where 'coengagement' = any(finetune_pairs.sources)
            group by w.user_id, w.item_id
        ) as b
        where b.recency <= finetune_pairs.max_basket_items
    ),
    basket_pairs as (
        select a.source, a.item_id as a, b.item_id as b, a.baskets as a_baskets, b.baskets as b_baskets,
               count(*) as together
        from basket_items as a
        inner join basket_items as b
            on b.source = a.source and b.basket = a.basket and b.item_id > a.item_id
        group by a.source, a.item_id, b.item_id, a.baskets, b.baskets
    ),
    tie_groups as (
        select g.items, lead(g.items) over (partition by g.user_id order by g.occurred_at) as next_items
        from (
            -- a group bigger than max_basket_items keeps a sample chosen by a hash of the item id
            select d.user_id, d.occurred_at,
                   (array_agg(d.item_id order by hashint8(d.item_id), d.item_id))[1:finetune_pairs.max_basket_items] as items
            from (
                select distinct w.user_id, w.occurred_at, w.item_id
                from windowed as w
                where 'sequence' = any(finetune_pairs.sources)
            ) as d
            group by d.user_id, d.occurred_at
        ) as g
    ),
    steps as (
        select x.item_id as a, y.item_id as b,
               1.0::double precision / (cardinality(g.items) * cardinality(g.next_items)) as weight
        from tie_groups as g
        cross join lateral unnest(g.items) as x (item_id)
        cross join lateral unnest(g.next_items) as y (item_id)
        where g.next_items is not null
          and x.item_id <> y.item_id
    ),
    step_scores as (
        select s.a, s.b, sum(s.weight) / (sum(sum(s.weight)) over (partition by s.a) + finetune_pairs.shrinkage) as score
        from steps as s
        group by s.a, s.b
    ),
    scored as (
        select p.source, p.a, p.b,
               p.together / sqrt(p.a_baskets * p.b_baskets) * p.together / (p.together + finetune_pairs.shrinkage)
                   as strength
        from basket_pairs as p
        union all
        select 'sequence', least(s.a, s.b), greatest(s.a, s.b), max(s.score)
        from step_scores as s
        group by least(s.a, s.b), greatest(s.a, s.b)
    ),
    endpoint_ranks as (
        select d.source, d.a, d.b, d.strength,
               row_number() over (partition by d.source, d.item_id order by d.strength desc, d.partner_id) as endpoint_rank
        from (
            select s.source, s.a, s.b, s.strength, s.a as item_id, s.b as partner_id from scored as s
            union all
            select s.source, s.a, s.b, s.strength, s.b, s.a from scored as s
        ) as d
    ),
    pair_ranks as (
        select r.source, r.a, r.b, max(r.strength) as strength, max(r.endpoint_rank)::integer as pair_rank
        from endpoint_ranks as r
        group by r.source, r.a, r.b
    ),
    best_source as (
        -- a pair several sources find counts once, for the source where it ranks best
        select distinct on (p.a, p.b) p.source, p.a, p.b, p.strength, p.pair_rank
        from pair_ranks as p
        where p.pair_rank <= finetune_pairs.per_item
        order by p.a, p.b, p.pair_rank, array_position(finetune_pairs.sources, p.source)
    ),
    final as (
        -- which item is the anchor: a hash of the pair, so both roles see every kind of text
        select case when hashint8(bs.a) < hashint8(bs.b) then bs.a else bs.b end as anchor_item_id,
               case when hashint8(bs.a) < hashint8(bs.b) then bs.b else bs.a end as positive_item_id,
               bs.source, bs.strength, bs.pair_rank
        from best_source as bs
        order by bs.pair_rank, bs.strength desc, bs.a, bs.b
        limit finetune_pairs.max_pairs
    )
    select f.anchor_item_id, f.positive_item_id, f.source, f.strength, f.pair_rank, xa.txt, xp.txt
    from final as f
    inner join embeddable as xa on xa.item_id = f.anchor_item_id
    inner join embeddable as xp on xp.item_id = f.positive_item_id
    order by f.pair_rank, f.strength desc, f.anchor_item_id, f.positive_item_id
$$;
comment on function pgrecs.finetune_pairs(timestamptz, text[], integer, integer, double precision, integer) is
    'Training pairs for fine-tuning an embedding model, mined from the current tenant''s positive events before '
    '`before` (all when null): items in one session (basket), engaged by one user (coengagement) or in consecutive '
    'tie groups of one user (sequence), scored per source (cosine with shrinkage; share of next-item steps), kept '
    'when among the per_item strongest pairs of both items, breadth first up to max_pairs; both items active with '
    'embeddable composed text (the text `pgrecs embed` embeds).';
