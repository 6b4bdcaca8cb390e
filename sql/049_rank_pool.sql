-- Scoring, the second stage of pgrecs.rank_items (and of recs.why_not): filters, exclusions and
-- blocks over the candidates, per-signal normalisation, fusion (weighted or reciprocal rank) and
-- boosts, best first, cut to the pool that the diversity stage chooses from.
--
-- One statement over the candidates (pkey lookups from the id array, never a join the planner
-- has to guess), with a plan that does not depend on its parameters. The per-signal breakdown
-- stays in flat arrays (seven array_agg per candidate made it the costliest step of a request)
-- and becomes jsonb only for the k items rank_items returns.

create or replace function pgrecs.rank_pool(
    tenant text,
    p record,
    signals text[],
    signal_weights double precision[],
    neighbor_items bigint[],
    neighbor_signals text[],
    neighbor_scores double precision[],
    neighbor_anchors bigint[],
    candidates bigint[],
    anchor_categories text[],
    exclude_ids bigint[],
    filters pgrecs.item_filter,
    pool integer,
    out ids bigint[],
    out scores double precision[],
    out brands text[],
    out categories text[],
    out boosts jsonb[],
    out d_pos integer[],
    out d_signal text[],
    out d_raw double precision[],
    out d_norm double precision[],
    out d_rank bigint[],
    out d_weight double precision[],
    out d_contrib double precision[],
    out d_anchor bigint[]
)
language plpgsql
stable parallel safe
as $$
#variable_conflict use_column
-- p is the placement, a pgrecs.placements row; typed record so that no function depends on the
-- table's row type. pool null keeps every candidate (recs.why_not ranks them all).
declare
    f_in_stock boolean := coalesce(filters.in_stock, false);
    f_price_min numeric := filters.price_min;
    f_price_max numeric := filters.price_max;
    f_category text[] := filters.category;
    f_brand text := filters.brand;
    f_brands text[] := filters.brands;
    f_exclude_brands text[] := filters.exclude_brands;
    f_exclude bigint[] := filters.exclude;
begin
    with
    live_rules as (
        select br.rule_id, br.name, br.kind, br.factor, br.item_id, br.brand, br.category, br.min_margin
        from pgrecs.live_rules(tenant, p.placement) br
        where br.kind in ('boost', 'block')
    ),
    cfg as (
        select c.signal, c.weight
        from unnest(signals, signal_weights) as c (signal, weight)
    ),
    cand as materialized (
        select i.item_id, i.tie_key, i.brand, i.category_path, i.margin,
               coalesce(sg.popularity, 0)::double precision as popularity,
               coalesce(sg.trending, 0)::double precision as trending,
               case when sg.quality_score < p.quality_threshold then p.quality_penalty else 1 end as quality_factor,
               cardinality(i.category_path) > 0
                   and array_to_string(i.category_path, chr(31)) = any(anchor_categories) as in_anchor_category
        from (select distinct u.id from unnest(candidates) as u (id)) c
        join pgrecs.items i on i.item_id = c.id
        left join pgrecs.item_signals sg on sg.item_id = c.id
        where i.tenant_id = tenant
          and pgrecs.item_passes(i, f_in_stock, f_price_min, f_price_max, f_category, f_brand,
                                 f_brands, f_exclude_brands, f_exclude)
          and not (c.id = any(exclude_ids))
          and not exists (
              select 1 from live_rules br
              where br.kind = 'block' and pgrecs.rule_matches(br.item_id, br.brand, br.category, br.min_margin, i)
          )
    ),
    raw as (
        select h.item_id, h.signal,
               sum(h.s) * max(case when h.signal = 'semantic' then c.quality_factor else 1 end) as raw,
               (array_agg(h.anchor_id order by h.s desc))[1] as anchor_id
        from unnest(neighbor_items, neighbor_signals, neighbor_scores, neighbor_anchors) as h (item_id, signal, s, anchor_id)
        join cand c on c.item_id = h.item_id
        group by h.item_id, h.signal
        -- signals of weight 0 are left out here already (cfg below would drop their rows)
        union all
        select c.item_id, 'popularity', c.popularity, null from cand c
        where 'popularity' = any(signals) and c.popularity > 0
        union all
        select c.item_id, 'trending', c.trending, null from cand c
        where 'trending' = any(signals) and c.trending > 0
        union all
        select c.item_id, 'category_popularity', c.popularity, null
        from cand c where 'category_popularity' = any(signals) and c.in_anchor_category and c.popularity > 0
        union all
        select c.item_id, 'margin', c.margin::double precision, null from cand c
        where 'margin' = any(signals) and c.margin > 0
    ),
    scored as (
        select r.item_id, r.signal, r.raw, r.anchor_id, c.weight,
               -- collate "C": signal names are ASCII, so the order is the same, and sorting by them
               -- skips the locale's comparison routine; one window (one sort, one pass) for both: the
               -- frame is the whole partition, so max() is computed once per signal
               r.raw / nullif(max(abs(r.raw)) over w, 0) as normalized,
               rank() over w as signal_rank
        from raw r
        join cfg c on c.signal = r.signal
        window w as (partition by r.signal collate "C" order by r.raw desc
                     rows between unbounded preceding and unbounded following)
    ),
    contributed as materialized (
        select s.*,
               case when p.fusion = 'rrf'
                    then case when s.raw > 0 then s.weight / (p.rrf_k + s.signal_rank) else 0 end
                    else s.weight * coalesce(s.normalized, 0) end as contribution
        from scored s
    ),
    fused as (
        -- the base score only: the per-signal breakdown is built for the pool (below), not for
        -- every candidate
        select cb.item_id, sum(cb.contribution) as base
        from contributed cb
        group by cb.item_id
    ),
    boosted as (
        select c.item_id,
               exp(sum(ln(br.factor))) as factor,
               jsonb_agg(jsonb_build_object('rule_id', br.rule_id, 'name', br.name, 'factor', br.factor)
                         order by br.rule_id) as rules
        from cand c
        join live_rules br on br.kind = 'boost'
         -- pgrecs.rule_matches, on the candidate's columns
         and (br.item_id is null or br.item_id = c.item_id)
         and (br.brand is null or br.brand = c.brand)
         and (br.category is null or br.category = any(c.category_path))
         and (br.min_margin is null or c.margin >= br.min_margin)
        group by c.item_id
    ),
    final as (
        select c.item_id, c.tie_key, c.brand, c.category_path[p.category_level] as cat,
               fu.base * coalesce(b.factor, 1) as score,
               coalesce(b.rules, '[]'::jsonb) as rules
        from cand c
        join fused fu on fu.item_id = c.item_id
        left join boosted b on b.item_id = c.item_id
        order by fu.base * coalesce(b.factor, 1) desc, c.tie_key
        limit pool
    ),
    pooled as materialized (
        select fi.*, row_number() over (order by fi.score desc, fi.tie_key)::integer as pos
        from final fi
    ),
    -- the per-signal breakdown of the pool, flat (pool position, signal, ...)
    breakdown as (
        select array_agg(po.pos) as d_pos, array_agg(cb.signal) as d_signal, array_agg(cb.raw) as d_raw,
               array_agg(cb.normalized) as d_norm, array_agg(cb.signal_rank) as d_rank,
               array_agg(cb.weight) as d_weight, array_agg(cb.contribution) as d_contrib,
               array_agg(cb.anchor_id) as d_anchor
        from pooled po
        join contributed cb on cb.item_id = po.item_id
    )
    select (select array_agg(po.item_id order by po.pos) from pooled po),
           (select array_agg(po.score order by po.pos) from pooled po),
           (select array_agg(po.brand order by po.pos) from pooled po),
           (select array_agg(po.cat order by po.pos) from pooled po),
           (select array_agg(po.rules order by po.pos) from pooled po),
           bd.d_pos, bd.d_signal, bd.d_raw, bd.d_norm, bd.d_rank, bd.d_weight, bd.d_contrib, bd.d_anchor
    into ids, scores, brands, categories, boosts,
         d_pos, d_signal, d_raw, d_norm, d_rank, d_weight, d_contrib, d_anchor
    from breakdown bd;
end
$$;
comment on function pgrecs.rank_pool(text, record, text[], double precision[], bigint[], text[], double precision[], bigint[], bigint[], text[], bigint[], pgrecs.item_filter, integer) is
    'Scoring of rank_items (stage 2): the candidates that pass the filters and are neither excluded nor blocked (pgrecs.live_rules), scored per signal (normalised or RRF, fused by weight), boosted, best first (ties by items.tie_key), cut to pool (null: all); as arrays by pool position (id, score, brand, category at the placement''s level, boost rules) and the per-signal breakdown (d_*: position, signal, raw, normalised, signal rank, weight, contribution, anchor).';
