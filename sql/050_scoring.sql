-- Hybrid scoring: pgrecs.rank_items, the ranking core of recs.recommend_for_item,
-- recs.recommend_for_user and recs.recommend (sql/069_recs.sql).
--
-- One ranking core (pgrecs.rank_items) serves all three. It reads only migration-owned tables
-- (items, events, item_neighbors, item_signals, item_embeddings, placements, business_rules),
-- never dbt models, so `dbt build` cannot drop these functions. Everything is STABLE: the request
-- log is written by the API (or by any volatile caller), never from inside a read function.
--
-- Stages, each a function of its own (recs.why_not runs the same ones):
--   signals      pgrecs.rank_signals: the placement's signals, weights, pools   sql/047_rank_signals.sql
--   candidates   pgrecs.rank_candidates: neighbour lists of every anchor,      sql/048_rank_candidates.sql
--                pgrecs.top_signal_candidates: popular, trending, popular in the anchors' categories
--   scoring      pgrecs.rank_pool: filters, exclusions, blocks, per-signal     sql/049_rank_pool.sql
--                normalisation and fusion (weighted or reciprocal rank), boosts, cut to the pool
--   diversity    pgrecs.rank_diversify: greedy MMR with brand/category caps    sql/049_rank_order.sql
--   rules        pgrecs.rank_pins (pins), over pgrecs.live_rules               sql/049_rank_order.sql,
--                (every read of boosts, blocks and pins)                       sql/062_rules.sql
--   explanations below: the breakdown as jsonb and the reasons (pgrecs.signal_reason) for the k
--                items returned
--
-- Speed (the recommend benchmark: 100k items, 1M events): candidates travel as id arrays
-- (index-only scans on item_neighbors_ranked, pkey lookups), never as a join the planner has to
-- guess; every statement's plan is parameter-independent so the stages run on cached generic
-- plans (no per-call planning; rank_items sets plan_cache_mode for all of them); the filters are
-- parsed once per call (pgrecs.parse_filters), taken apart into scalars and tested by an inlinable
-- function (pgrecs.item_passes);
-- the per-signal breakdown stays in flat arrays and becomes jsonb only for the k items returned;
-- signals of weight 0 produce no rows; MMR computes k x pool similarities from embeddings read
-- once; reasons are built for the final k only.

create or replace function pgrecs.rank_items(
    placement_name text,
    anchor_ids bigint[],
    anchor_weights real[],
    anchor_labels text[],
    exclude_ids bigint[],
    k integer,
    filters jsonb,
    explain boolean,
    anchor_positions integer[] default null
)
returns table (item_id bigint, external_id text, score double precision, rank integer,
               contributions jsonb, reasons text[])
language plpgsql
stable parallel safe
-- Every cached statement of the stages has a plan that does not depend on its parameters (driven
-- by id arrays and pkey/index-only lookups); re-planning them per call (custom plans) cost ~5 ms
-- of CPU a request. The statements whose best plan does depend on them run through EXECUTE.
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
    t text := pgrecs.current_tenant();
    p pgrecs.placements;
    f pgrecs.item_filter;
    lam double precision;
    v_pool integer;
    v_model smallint;
    sig record;       -- pgrecs.rank_signals
    cand record;      -- pgrecs.rank_candidates
    pool record;      -- pgrecs.rank_pool
    mmr record;       -- pgrecs.rank_diversify
    pin record;       -- pgrecs.rank_pins
    final_ids bigint[] := '{}';
    final_pos integer[] := '{}';
    final_idx integer[] := '{}';
    slot integer := 1;
    i integer := 1;
begin
    if k is null or k < 1 or k > 100 then
        raise exception 'k must be between 1 and 100' using errcode = '22023';
    end if;
    p := pgrecs.placement_row(placement_name);
    f := pgrecs.parse_filters(p.default_filters || coalesce(filters, '{}'));
    lam := p.mmr_lambda;
    v_pool := case when lam < 1 or p.max_per_brand is not null or p.max_per_category is not null
                   then k * p.mmr_pool_factor else k end;
    v_model := coalesce(p.model_id, (select m.model_id from pgrecs.embedding_models m where m.is_default));
    anchor_ids := coalesce(anchor_ids, '{}');
    exclude_ids := coalesce(exclude_ids, '{}');

    -- 1. signals and candidates
    select * into sig from pgrecs.rank_signals(p.placement, p.weights, p.pool_sizes);
    select * into cand
    from pgrecs.rank_candidates(t, anchor_ids, anchor_weights, anchor_positions, exclude_ids,
                                sig.signals, sig.pools, sig.kinds, f);
    -- 2. scoring, cut to the pool
    select * into pool
    from pgrecs.rank_pool(t, p, sig.signals, sig.signal_weights, cand.neighbor_items, cand.neighbor_signals,
                          cand.neighbor_scores, cand.neighbor_anchors, cand.candidates, cand.anchor_categories,
                          exclude_ids, f, v_pool);
    -- 3. diversity and caps
    select * into mmr
    from pgrecs.rank_diversify(pool.ids, pool.scores, pool.brands, pool.categories, v_model, lam,
                               p.max_per_brand, p.max_per_category, k);
    -- 4. pins
    select * into pin from pgrecs.rank_pins(t, p.placement, f, exclude_ids, k);

    -- final order: pins at their positions, the MMR order fills the other slots
    while slot <= k loop
        if slot = any(pin.positions) then
            final_ids := final_ids || pin.items[array_position(pin.positions, slot)];
            final_idx := final_idx || coalesce(array_position(pool.ids, pin.items[array_position(pin.positions, slot)]), 0);
            final_pos := final_pos || slot;
            slot := slot + 1;
            continue;
        end if;
        while i <= cardinality(mmr.picks) and pool.ids[mmr.picks[i]] = any(pin.items) loop
            i := i + 1;
        end loop;
        if i > cardinality(mmr.picks) then
            -- list shorter than k: pins beyond its end move up
            exit when not exists (select 1 from unnest(pin.positions) pp where pp > slot);
            slot := slot + 1;
            continue;
        end if;
        final_ids := final_ids || pool.ids[mmr.picks[i]];
        final_idx := final_idx || mmr.picks[i];
        final_pos := final_pos || slot;
        i := i + 1;
        slot := slot + 1;
    end loop;

    -- 5. explanations. A signal gives a reason only when it contributed materially: at least a
    --    fifth (0.2) of the item's positive score (per-signal normalised contributions, or their
    --    RRF terms). At most three reasons, strongest first: a pin, then the material signals by
    --    contribution, then campaign boosts and demotions. "popular right now" needs the item in
    --    the top 5% of the shop by popularity (item_signals.popularity_percentile), "popular in
    --    <category>" among the 10 most popular of its category. An anchor with a null label is the
    --    item of the page itself: reasons call it "this item" and never "similar to" it.
    return query
    with chosen as (
        select fl.id, fl.idx, row_number() over (order by fl.pos)::integer as pos,
               array_position(pin.items, fl.id) as pin_no
        from unnest(final_ids, final_idx, final_pos) as fl (id, idx, pos)
    ),
    anchors as (
        select a.item_id, a.weight, a.label, ai.external_id, ai.title, ai.brand, ai.category_path,
               -- how reasons name the anchor, and whose choice it was
               case when a.label is null then 'this item' else format('"%s"%s', ai.title, a.label) end as name,
               case when a.label is null then 'page' when a.label like ' you %' then 'history' else 'example' end
                   as kind
        from unnest(anchor_ids, anchor_weights, anchor_labels) as a (item_id, weight, label)
        join pgrecs.items ai on ai.item_id = a.item_id
    ),
    -- the breakdown rows of the chosen items (pins from outside the pool have none)
    det as (
        select d.pos, d.signal, d.raw, d.norm, d.rnk, d.weight, d.contrib, d.anchor,
               d.contrib / nullif(sum(greatest(d.contrib, 0)) over (partition by d.pos), 0) as share
        from unnest(pool.d_pos, pool.d_signal, pool.d_raw, pool.d_norm, pool.d_rank, pool.d_weight, pool.d_contrib,
                    pool.d_anchor)
             as d (pos, signal, raw, norm, rnk, weight, contrib, anchor)
        where d.pos = any(final_idx)
    )
    select ch.id,
           it.external_id,
           case when ch.idx > 0 then pool.scores[ch.idx] else 0 end,
           ch.pos,
           case when explain then
               coalesce((select jsonb_object_agg(d.signal, jsonb_build_object(
                                'raw', d.raw, 'normalized', d.norm, 'signal_rank', d.rnk, 'weight', d.weight,
                                'contribution', d.contrib, 'share', d.share, 'anchor_item_id', d.anchor,
                                'anchor_external_id', an.external_id, 'anchor_title', an.title))
                         from det d
                         left join anchors an on an.item_id = d.anchor
                         where d.pos = ch.idx), '{}'::jsonb)
               || jsonb_build_object(
                   '_fusion', p.fusion,
                   '_boosts', case when ch.idx > 0 then pool.boosts[ch.idx] else '[]'::jsonb end,
                   '_pinned', case when ch.pin_no is not null
                                   then jsonb_build_object('position', ch.pos, 'rule', pin.names[ch.pin_no]) end,
                   '_mmr', jsonb_build_object('lambda', lam, 'relevance_rank', nullif(ch.idx, 0),
                                              'relevance', case when ch.idx > 0 then pool.scores[ch.idx] / mmr.max_relevance end))
           else
               -- via text, as jsonb stores a float (shortest exact digits), then rounded
               coalesce((select jsonb_object_agg(d.signal, round(d.contrib::text::numeric, 6))
                         from det d where d.pos = ch.idx), '{}'::jsonb)
           end,
           array(
               select x.reason
               from (
                   select 1 as grp, 0::double precision as c, 0 as kl, '' as k,
                          format('pinned at position %s: %s', ch.pos, pin.names[ch.pin_no]) as reason
                   where ch.pin_no is not null
                   union all
                   select 2, d.contrib, octet_length(d.signal), d.signal,
                          pgrecs.signal_reason(d.signal, sig.reason_formats[array_position(sig.signals, d.signal)], an.kind, an.name, an.brand, an.category_path, it.brand,
                                               it.category_path, sg.popularity_percentile, sg.category_popularity_rank)
                   from det d
                   left join anchors an on an.item_id = d.anchor
                   where d.pos = ch.idx and d.contrib > 0 and d.share >= 0.2
                   union all
                   select 3, 0, 0, '', 'boosted: campaign ' || (b.value ->> 'name')
                   from jsonb_array_elements(case when ch.idx > 0 then pool.boosts[ch.idx] else '[]'::jsonb end) b
                   where (b.value ->> 'factor')::double precision >= 1
                   union all
                   select 3, 0, 0, '', 'demoted: ' || (b.value ->> 'name')
                   from jsonb_array_elements(case when ch.idx > 0 then pool.boosts[ch.idx] else '[]'::jsonb end) b
                   where (b.value ->> 'factor')::double precision < 1
               ) x
               where x.reason is not null
               -- ties in the order of a jsonb object's keys (shorter first), as when these came from jsonb
               order by x.grp, x.c desc, x.kl, x.k
               limit 3
           )
    from chosen ch
    join pgrecs.items it on it.item_id = ch.id
    left join pgrecs.item_signals sg on sg.item_id = ch.id
    order by ch.pos;
end
$$;
comment on function pgrecs.rank_items(text, bigint[], real[], text[], bigint[], integer, jsonb, boolean, integer[]) is
    'Ranking core behind recs.recommend*: candidates from the anchors'' neighbour lists (the next-item lists weighted by anchor recency position, halving per step) and popularity, filters, blocks, fusion, boosts, MMR with caps, pins, explanations; score ties broken by items.tie_key.';
