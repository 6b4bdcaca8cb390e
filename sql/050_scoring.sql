-- Hybrid scoring: pgrecs.rank_items, the ranking core of recs.recommend_for_item,
-- recs.recommend_for_user and recs.recommend (sql/069_recs.sql).
--
-- One ranking core (pgrecs.rank_items) serves all three. It reads only migration-owned tables
-- (items, events, item_neighbors, item_signals, item_embeddings, placements, business_rules),
-- never dbt models, so `dbt build` cannot drop these functions. Everything is STABLE: the request
-- log is written by the API (or by any volatile caller), never from inside a read function.
--
-- Steps: anchors -> candidates per signal (neighbour lists of every anchor, popularity, trending,
-- popular in the anchors' categories) -> filters, exclusions, blocks -> per-signal normalisation
-- and fusion (weighted or reciprocal rank) -> boosts -> greedy MMR with brand/category caps
-- (filled past the caps when they would leave fewer than k) -> pins -> explanations.
--
-- Speed (the recommend benchmark: 100k items, 1M events): candidates travel as id arrays
-- (index-only scans on item_neighbors_ranked, pkey lookups), never as a join the planner has to
-- guess; every statement's plan is parameter-independent so rank_items runs on cached generic
-- plans (no per-call planning); the filters are taken apart into scalars once per call and tested
-- by an inlinable function (pgrecs.item_passes); the per-signal breakdown stays in flat arrays and
-- becomes jsonb only for the k items returned; signals of weight 0 produce no rows; MMR computes
-- k x pool similarities from embeddings read once; reasons are built for the final k only.

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
-- Every cached statement below has a plan that does not depend on its parameters (driven by
-- id arrays and pkey/index-only lookups); re-planning them per call (custom plans) cost ~5 ms
-- of CPU a request. The statements whose best plan does depend on them run through EXECUTE.
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
    t text := pgrecs.current_tenant();
    p pgrecs.placements;
    f jsonb;
    f_in_stock boolean;
    f_price_min numeric;
    f_price_max numeric;
    f_category text;
    f_brand text;
    f_brands jsonb;
    f_exclude_brands jsonb;
    f_exclude jsonb;
    w jsonb;
    v_model smallint;
    v_pool integer;
    ids bigint[];
    scores double precision[];
    brands text[];
    cats text[];
    d_pos integer[];
    d_signal text[];
    d_raw double precision[];
    d_norm double precision[];
    d_rank bigint[];
    d_weight double precision[];
    d_contrib double precision[];
    d_anchor bigint[];
    boosts jsonb[];
    n integer;
    embs halfvec[];
    maxsim double precision[];
    picked boolean[];
    sel integer[] := '{}';
    pre_rank integer[];
    rel double precision[];
    b_idx integer[];
    c_idx integer[];
    b_cnt integer[];
    c_cnt integer[];
    max_b integer;
    max_c integer;
    capped boolean;
    sig_names text[];
    sig_weights double precision[];
    sig_pools integer[];
    sig_kinds text[];
    sig_reasons text[];
    h_item bigint[];
    h_signal text[];
    h_s double precision[];
    h_anchor bigint[];
    cand_ids bigint[];
    more_ids bigint[];
    anchor_cats text[];
    v_pop integer;
    v_trend integer;
    v_catpop integer;
    maxrel double precision;
    best integer;
    best_val double precision;
    val double precision;
    i integer;
    r record;
    final_ids bigint[];
    final_pos integer[];
    final_idx integer[];
    pins bigint[] := '{}';
    pin_pos integer[] := '{}';
    pin_names text[] := '{}';
    slot integer;
    lam double precision;
begin
    if k is null or k < 1 or k > 100 then
        raise exception 'k must be between 1 and 100' using errcode = '22023';
    end if;
    p := pgrecs.placement_row(placement_name);
    f := p.default_filters || pgrecs.check_filters(filters);
    -- the filters as scalars, for pgrecs.item_passes (same tests as pgrecs.item_matches_filters)
    f_in_stock := coalesce((f ->> 'in_stock')::boolean, false);
    f_price_min := (f ->> 'price_min')::numeric;
    f_price_max := (f ->> 'price_max')::numeric;
    f_category := f ->> 'category';
    f_brand := f ->> 'brand';
    f_brands := f -> 'brands';
    f_exclude_brands := f -> 'exclude_brands';
    f_exclude := f -> 'exclude';
    w := p.weights;
    lam := p.mmr_lambda;
    v_pool := case when lam < 1 or p.max_per_brand is not null or p.max_per_category is not null
                   then k * p.mmr_pool_factor else k end;
    v_model := coalesce(p.model_id, (select m.model_id from pgrecs.embedding_models m where m.is_default));
    anchor_ids := coalesce(anchor_ids, '{}');
    exclude_ids := coalesce(exclude_ids, '{}');

    -- 1. candidates, in small statements whose plans stay good when plpgsql caches them
    --    generically: the anchors' neighbour lists (index-only scans on item_neighbors_ranked)
    --    as arrays, then the ids of popular, trending and popular-in-category items.
    --    The signals are the registered ones the placement weights (pgrecs.signals).
    select s.signals, s.kinds, s.weights, s.pools, s.reason_formats
    into sig_names, sig_kinds, sig_weights, sig_pools, sig_reasons
    from pgrecs.placement_signals(p) as s;

    -- the next-item signal ('sequence') asks what follows the latest steps, so it weighs anchors
    -- by their recency position (the most recent 1; each later one half the one before; items of
    -- one timestamp share a position), not by their summed history weight: a session of ratings
    -- seconds apart has equal weights, yet only its last items say what comes next
    select coalesce(array_agg(nb.neighbor_item_id), '{}'), coalesce(array_agg(s.signal), '{}'),
           coalesce(array_agg(case when s.signal = 'sequence'
                                   then sign(a.weight) * power(0.5::float8, (coalesce(a.pos, a.ord) - 1)::float8)
                                   else a.weight end * nb.score), '{}'),
           coalesce(array_agg(a.item_id), '{}')
    into h_item, h_signal, h_s, h_anchor
    from unnest(anchor_ids, anchor_weights, anchor_positions) with ordinality as a (item_id, weight, pos, ord)
    cross join unnest(sig_names, sig_pools, sig_kinds) as s (signal, pool, kind)
    cross join lateral (
        select nn.neighbor_item_id, nn.score
        from pgrecs.item_neighbors nn
        where nn.tenant_id = t
          and nn.signal = s.signal
          and nn.item_id = a.item_id
          and nn.rank <= s.pool
    ) nb
    where s.kind = 'neighbors'
      and not (nb.neighbor_item_id = any(exclude_ids));

    v_pop := coalesce(sig_pools[array_position(sig_names, 'popularity')], 0);
    v_trend := coalesce(sig_pools[array_position(sig_names, 'trending')], 0);
    v_catpop := coalesce(sig_pools[array_position(sig_names, 'category_popularity')], 0);
    -- category paths of the positive anchors (joined by chr(31)), strongest anchor first; the
    -- first 5 bring popular-in-category candidates
    select coalesce(array_agg(x.cp order by x.w desc, x.cp), '{}') into anchor_cats
    from (
        select array_to_string(ai.category_path, chr(31)) as cp, max(a.weight) as w
        from unnest(anchor_ids, anchor_weights) as a (item_id, weight)
        join pgrecs.items ai on ai.item_id = a.item_id
        where a.weight > 0 and cardinality(ai.category_path) > 0
        group by 1
    ) x;

    -- Popular, trending and popular-in-category candidates. A cached generic plan knows neither
    -- the pool size (LIMIT $n counts as 10% of the table) nor how selective the filters are, and
    -- would read and sort all of item_signals. So each list is first taken from the top 1000 of
    -- its ordered index (a plan that depends on no parameter), filtered after; only when that
    -- window holds fewer matching items than the pool (narrow filters, small catalogs) is the
    -- exact query planned for this call (EXECUTE).
    cand_ids := h_item;
    if v_pop > 0 then
        more_ids := array(
            select y.item_id
            from (
                -- the filter is a column here, not a qual the planner would push into a scan of items
                select x.item_id, pgrecs.item_passes(i, f_in_stock, f_price_min, f_price_max, f_category, f_brand,
                                    f_brands, f_exclude_brands, f_exclude) as ok
                from (
                    -- the top 1000 and every item tied with the 1000th (none when fewer: exact path)
                    select s.item_id, s.popularity
                    from pgrecs.item_signals s
                    where s.tenant_id = t
                      and s.popularity >= (select s2.popularity from pgrecs.item_signals s2
                                           where s2.tenant_id = t
                                           order by s2.popularity desc
                                           offset 999 limit 1)
                ) x
                join pgrecs.items i on i.item_id = x.item_id
                order by x.popularity desc, i.tie_key
            ) y
            where y.ok
            limit v_pop);
        if cardinality(more_ids) < v_pop then
            execute $q$
                select array(
                    select s.item_id
                    from pgrecs.item_signals s
                    join pgrecs.items i on i.item_id = s.item_id
                    where s.tenant_id = $1
                      and pgrecs.item_matches_filters(i, $2)
                    order by s.popularity desc, i.tie_key
                    limit $3)
            $q$ into more_ids using t, f, v_pop;
        end if;
        cand_ids := cand_ids || more_ids;
    end if;
    if v_trend > 0 then
        more_ids := array(
            select y.item_id
            from (
                -- the filter is a column here, not a qual the planner would push into a scan of items
                select x.item_id, pgrecs.item_passes(i, f_in_stock, f_price_min, f_price_max, f_category, f_brand,
                                    f_brands, f_exclude_brands, f_exclude) as ok
                from (
                    select s.item_id, s.trending
                    from pgrecs.item_signals s
                    where s.tenant_id = t
                      and s.trending > 0
                      and s.trending >= (select s2.trending from pgrecs.item_signals s2
                                         where s2.tenant_id = t
                                           and s2.trending > 0
                                         order by s2.trending desc
                                         offset 999 limit 1)
                ) x
                join pgrecs.items i on i.item_id = x.item_id
                order by x.trending desc, i.tie_key
            ) y
            where y.ok
            limit v_trend);
        if cardinality(more_ids) < v_trend then
            execute $q$
                select array(
                    select s.item_id
                    from pgrecs.item_signals s
                    join pgrecs.items i on i.item_id = s.item_id
                    where s.tenant_id = $1
                      and s.trending > 0
                      and pgrecs.item_matches_filters(i, $2)
                    order by s.trending desc, i.tie_key
                    limit $3)
            $q$ into more_ids using t, f, v_trend;
        end if;
        cand_ids := cand_ids || more_ids;
    end if;
    if v_catpop > 0 and cardinality(anchor_cats) > 0 then
        -- per category: its items (items_tenant_category_key: text equality is leakproof, so the
        -- index serves the API role under row-level security too, where text[] equality fell back
        -- to a scan of all items), each one's popularity by its key (offset 0 keeps that a
        -- per-item lookup, not a scan of item_signals), best first
        cand_ids := cand_ids || array(
            select y.item_id
            from unnest(anchor_cats[1:5]) as ac (cp)
            cross join lateral (
                select i.item_id
                from pgrecs.items i
                cross join lateral (
                    select s.popularity
                    from pgrecs.item_signals s
                    where s.item_id = i.item_id
                    offset 0
                ) sp
                where i.tenant_id = t
                  and i.category_key = ac.cp
                  and pgrecs.item_passes(i, f_in_stock, f_price_min, f_price_max, f_category, f_brand,
                                    f_brands, f_exclude_brands, f_exclude)
                order by sp.popularity desc, i.tie_key
                limit v_catpop
            ) y);
    end if;

    -- 2. filters, exclusions, blocks, per-signal normalisation, fusion and boosts over the
    --    candidates (pkey lookups from the id array), best first, cut to the pool size; the
    --    per-signal breakdown stays in arrays and becomes jsonb only for the pool
    with
    live_rules as (
        select br.rule_id, br.name, br.kind, br.factor, br.item_id, br.brand, br.category, br.min_margin
        from pgrecs.business_rules br
        where br.tenant_id = t
          and br.enabled
          and br.kind in ('boost', 'block')
          and (br.placement is null or br.placement = p.placement)
          and (br.starts_at is null or br.starts_at <= now())
          and (br.ends_at is null or now() < br.ends_at)
    ),
    cfg as (
        select c.signal, c.weight
        from unnest(sig_names, sig_weights) as c (signal, weight)
    ),
    cand as materialized (
        select i.item_id, i.tie_key, i.brand, i.category_path, i.margin,
               coalesce(sg.popularity, 0)::double precision as popularity,
               coalesce(sg.trending, 0)::double precision as trending,
               case when sg.quality_score < p.quality_threshold then p.quality_penalty else 1 end as quality_factor,
               cardinality(i.category_path) > 0
                   and array_to_string(i.category_path, chr(31)) = any(anchor_cats) as in_anchor_category
        from (select distinct u.id from unnest(cand_ids) as u (id)) c
        join pgrecs.items i on i.item_id = c.id
        left join pgrecs.item_signals sg on sg.item_id = c.id
        where i.tenant_id = t
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
        from unnest(h_item, h_signal, h_s, h_anchor) as h (item_id, signal, s, anchor_id)
        join cand c on c.item_id = h.item_id
        group by h.item_id, h.signal
        -- signals of weight 0 are left out here already (cfg below would drop their rows)
        union all
        select c.item_id, 'popularity', c.popularity, null from cand c
        where 'popularity' = any(sig_names) and c.popularity > 0
        union all
        select c.item_id, 'trending', c.trending, null from cand c
        where 'trending' = any(sig_names) and c.trending > 0
        union all
        select c.item_id, 'category_popularity', c.popularity, null
        from cand c where 'category_popularity' = any(sig_names) and c.in_anchor_category and c.popularity > 0
        union all
        select c.item_id, 'margin', c.margin::double precision, null from cand c
        where 'margin' = any(sig_names) and c.margin > 0
    ),
    scored as (
        select r.item_id, r.signal, r.raw, r.anchor_id, c.weight,
               -- collate "C": signal names are ASCII, so the order is the same, and sorting by them
               -- skips the locale's comparison routine
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
        -- every candidate (seven array_agg per candidate made this the costliest step of a request)
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
        limit v_pool
    ),
    pooled as materialized (
        select fi.*, row_number() over (order by fi.score desc, fi.tie_key)::integer as pos
        from final fi
    ),
    -- the per-signal breakdown of the pool, flat (pool position, signal, ...): jsonb is built in
    -- step 5 for the k items shown, not for the whole pool
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
    into ids, scores, brands, cats, boosts,
         d_pos, d_signal, d_raw, d_norm, d_rank, d_weight, d_contrib, d_anchor
    from breakdown bd;

    n := coalesce(cardinality(ids), 0);

    -- 3. diversity (greedy maximal marginal relevance on embeddings) and caps, in one pass. Caps
    --    are kept while the pool allows; when they would leave the list shorter than k, the rest
    --    of the pool fills it in MMR order (a list has k items whenever k eligible items exist).
    if n > 0 then
        picked := array_fill(false, array[n]);
        maxsim := array_fill(0::double precision, array[n]);
        maxrel := greatest((select max(abs(x)) from unnest(scores) x), 1e-12);
        if lam < 1 and n > 1 and v_model is not null then
            -- the pool's embeddings, read once; similarities are computed per pick (k x n, not n x n)
            select array_agg(ie.embedding order by o.i) into embs
            from unnest(ids) with ordinality as o (id, i)
            left join pgrecs.item_embeddings ie on ie.item_id = o.id and ie.model_id = v_model;
        end if;
        -- relevance and brand/category numbers per pool position, so the greedy loop below only
        -- reads integer and float arrays
        select array_agg(lam * x.s / maxrel order by x.i),
               array_agg(x.bi order by x.i),
               array_agg(x.ci order by x.i)
        into rel, b_idx, c_idx
        from (
            select u.i, u.s,
                   case when u.b is null then 0 else dense_rank() over (order by u.b) end as bi,
                   case when u.c is null then 0 else dense_rank() over (order by u.c) end as ci
            from unnest(scores, brands, cats) with ordinality as u (s, b, c, i)
        ) x;
        b_cnt := array_fill(0, array[n]);
        c_cnt := array_fill(0, array[n]);
        max_b := coalesce(p.max_per_brand, 2147483647);
        max_c := coalesce(p.max_per_category, 2147483647);
        capped := true;
        while cardinality(sel) < k loop
            best := null;
            best_val := null;
            for i in 1 .. n loop
                continue when picked[i];
                continue when capped and ((b_idx[i] > 0 and b_cnt[b_idx[i]] >= max_b)
                                          or (c_idx[i] > 0 and c_cnt[c_idx[i]] >= max_c));
                val := rel[i] - (1 - lam) * maxsim[i];
                if best_val is null or val > best_val then
                    best := i;
                    best_val := val;
                end if;
            end loop;
            if best is null then
                exit when not capped;
                capped := false;  -- the caps left the list short: fill from the rest of the pool
                continue;
            end if;
            picked[best] := true;
            sel := sel || best;
            if b_idx[best] > 0 then
                b_cnt[b_idx[best]] := b_cnt[b_idx[best]] + 1;
            end if;
            if c_idx[best] > 0 then
                c_cnt[c_idx[best]] := c_cnt[c_idx[best]] + 1;
            end if;
            if embs is not null and embs[best] is not null and cardinality(sel) < k then
                select array_agg(greatest(maxsim[x.i], coalesce(1 - (x.e <=> embs[best]), 0)) order by x.i)
                into maxsim
                from unnest(embs) with ordinality as x (e, i);
            end if;
        end loop;
    end if;

    -- 4. pins: live pin rules whose item passes the filters, is not excluded and not blocked
    for r in
        select br.item_id, br.position, br.name
        from pgrecs.business_rules br
        join pgrecs.items i on i.item_id = br.item_id
        where br.tenant_id = t
          and br.kind = 'pin'
          and br.enabled
          and (br.placement is null or br.placement = p.placement)
          and (br.starts_at is null or br.starts_at <= now())
          and (br.ends_at is null or now() < br.ends_at)
          and i.tenant_id = t
          and pgrecs.item_passes(i, f_in_stock, f_price_min, f_price_max, f_category, f_brand,
                                    f_brands, f_exclude_brands, f_exclude)
          and not (i.item_id = any(exclude_ids))
          and not exists (
              select 1 from pgrecs.business_rules bb
              where bb.tenant_id = t and bb.kind = 'block' and bb.enabled
                and (bb.placement is null or bb.placement = p.placement)
                and (bb.starts_at is null or bb.starts_at <= now())
                and (bb.ends_at is null or now() < bb.ends_at)
                and pgrecs.rule_matches(bb.item_id, bb.brand, bb.category, bb.min_margin, i)
          )
        order by br.position, br.rule_id
    loop
        continue when r.item_id = any(pins) or r.position > k;
        slot := r.position;
        while slot = any(pin_pos) loop
            slot := slot + 1;
        end loop;
        continue when slot > k;
        pins := pins || r.item_id;
        pin_pos := pin_pos || slot;
        pin_names := pin_names || r.name;
    end loop;

    -- final order: pins at their positions, the MMR order fills the other slots
    final_ids := '{}';
    final_pos := '{}';
    final_idx := '{}';
    slot := 1;
    i := 1;
    while slot <= k loop
        if slot = any(pin_pos) then
            final_ids := final_ids || pins[array_position(pin_pos, slot)];
            final_idx := final_idx || coalesce(array_position(ids, pins[array_position(pin_pos, slot)]), 0);
            final_pos := final_pos || slot;
            slot := slot + 1;
            continue;
        end if;
        while i <= cardinality(sel) and ids[sel[i]] = any(pins) loop
            i := i + 1;
        end loop;
        if i > cardinality(sel) then
            -- list shorter than k: pins beyond its end move up
            exit when not exists (select 1 from unnest(pin_pos) pp where pp > slot);
            slot := slot + 1;
            continue;
        end if;
        final_ids := final_ids || ids[sel[i]];
        final_idx := final_idx || sel[i];
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
               array_position(pins, fl.id) as pin_no
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
        from unnest(d_pos, d_signal, d_raw, d_norm, d_rank, d_weight, d_contrib, d_anchor)
             as d (pos, signal, raw, norm, rnk, weight, contrib, anchor)
        where d.pos = any(final_idx)
    )
    select ch.id,
           it.external_id,
           case when ch.idx > 0 then scores[ch.idx] else 0 end,
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
                   '_boosts', case when ch.idx > 0 then boosts[ch.idx] else '[]'::jsonb end,
                   '_pinned', case when ch.pin_no is not null
                                   then jsonb_build_object('position', ch.pos, 'rule', pin_names[ch.pin_no]) end,
                   '_mmr', jsonb_build_object('lambda', lam, 'relevance_rank', nullif(ch.idx, 0),
                                              'relevance', case when ch.idx > 0 then scores[ch.idx] / maxrel end))
           else
               -- via text, as jsonb stores a float (shortest exact digits), then rounded
               coalesce((select jsonb_object_agg(d.signal, round(d.contrib::text::numeric, 6))
                         from det d where d.pos = ch.idx), '{}'::jsonb)
           end,
           array(
               select x.reason
               from (
                   select 1 as grp, 0::double precision as c, 0 as kl, '' as k,
                          format('pinned at position %s: %s', ch.pos, pin_names[ch.pin_no]) as reason
                   where ch.pin_no is not null
                   union all
                   select 2, d.contrib, octet_length(d.signal), d.signal,
                          -- the registry's wording (pgrecs.signals.reason_format, %s: the anchor's
                          -- name), but for the page's own item and the user's history, which
                          -- semantic and ease word their own way, and the popularity thresholds
                          case
                              when d.signal = 'semantic' and an.kind = 'page' then
                                  case when an.brand = it.brand then format('similar description, same brand (%s)', it.brand)
                                       when an.category_path = it.category_path and cardinality(it.category_path) > 0
                                           then format('similar description, same category (%s)',
                                                       array_to_string(it.category_path, ' > '))
                                       else 'similar description'
                                  end
                              when d.signal = 'ease' and an.kind = 'history' then 'customers like you also chose this'
                              when d.signal = 'ease' and an.kind = 'page' then 'customers who chose this item also chose this one'
                              when d.signal = 'popularity' and not coalesce(sg.popularity_percentile < 0.05, false) then null
                              when d.signal = 'category_popularity' then
                                  case when sg.category_popularity_rank <= 10
                                       then format(sig_reasons[array_position(sig_names, d.signal)],
                                                   array_to_string(it.category_path, ' > ')) end
                              else format(sig_reasons[array_position(sig_names, d.signal)], an.name)
                          end
                   from det d
                   left join anchors an on an.item_id = d.anchor
                   where d.pos = ch.idx and d.contrib > 0 and d.share >= 0.2
                   union all
                   select 3, 0, 0, '', 'boosted: campaign ' || (b.value ->> 'name')
                   from jsonb_array_elements(case when ch.idx > 0 then boosts[ch.idx] else '[]'::jsonb end) b
                   where (b.value ->> 'factor')::double precision >= 1
                   union all
                   select 3, 0, 0, '', 'demoted: ' || (b.value ->> 'name')
                   from jsonb_array_elements(case when ch.idx > 0 then boosts[ch.idx] else '[]'::jsonb end) b
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
