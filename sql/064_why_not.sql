-- Why not: the exact reason an item is missing from a placement's top k for a context.
--
-- recs.why_not follows pgrecs.rank_items (sql/050_scoring.sql) stage by stage: the context's
-- anchors and exclusions (as recs.recommend_for_item / recs.recommend_for_user build them), the
-- filters, the live blocks, the candidates of every signal, the fused and boosted score over all
-- candidates (rank_items keeps only the top of it, the pool), the greedy MMR pass with brand and
-- category caps over the pool, and the pins. Its statements are those of rank_items, so the two
-- agree on every tie; tests/test_why_not.py checks each reason and that recs.why_not says
-- "shown at position p" exactly for the items rank_items returns.

create or replace function pgrecs.why_not(
    item text,
    placement text default 'pdp_similar',
    context_item text default null,
    context_user text default null,
    k integer default 10,
    filters jsonb default '{}'
)
returns table (reason text, detail text, stage integer, rank integer, score double precision,
               kth_score double precision, rule_id bigint, facts jsonb)
language plpgsql
stable parallel safe
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
declare
    t text := pgrecs.current_tenant();
    p pgrecs.placements;
    it pgrecs.items;
    ctx_id bigint;
    ctx_title text;
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
    lam double precision;
    v_pool integer;
    v_model smallint;
    anchor_ids bigint[];
    anchor_weights real[];
    anchor_labels text[];
    anchor_positions integer[];
    exclude_ids bigint[] := '{}';
    purchased_ids bigint[] := '{}';
    shown_ids bigint[];
    shown_scores double precision[];
    kth double precision;
    pos integer;
    sig_names text[];
    sig_weights double precision[];
    sig_pools integer[];
    sig_kinds text[];
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
    ids bigint[];
    scores double precision[];
    brands text[];
    cats text[];
    target_breakdown jsonb;
    n integer;
    tpos integer;
    found_any boolean := false;
    r record;
    notes text[] := '{}';
    sig text;
    sig_kind text;
    nb_rank integer;
    nb_title text;
    -- MMR
    embs halfvec[];
    maxsim double precision[];
    picked boolean[];
    sel integer[] := '{}';
    rel double precision[];
    b_idx integer[];
    c_idx integer[];
    b_cnt integer[];
    c_cnt integer[];
    max_b integer;
    max_c integer;
    capped boolean;
    maxrel double precision;
    best integer;
    best_val double precision;
    val double precision;
    i integer;
    cap_kind text;
    cap_step integer;
    mmr_over integer;
    mmr_step integer;
    -- pins
    pins bigint[] := '{}';
    pin_pos integer[] := '{}';
    slot integer;
begin
    if k is null or k < 1 or k > 100 then
        raise exception 'k must be between 1 and 100' using errcode = '22023';
    end if;
    if (why_not.context_item is null) = (why_not.context_user is null) then
        raise exception 'give one context: context_item or context_user' using errcode = '22023';
    end if;
    select * into it from pgrecs.items i where i.tenant_id = t and i.external_id = why_not.item;
    if not found then
        raise exception 'unknown item: %', why_not.item using errcode = 'P0002';
    end if;
    p := pgrecs.placement_row(why_not.placement);

    -- the context's anchors and exclusions, as recs.recommend_for_item and recs.recommend_for_user build them
    if why_not.context_item is not null then
        select i.item_id, i.title into ctx_id, ctx_title
        from pgrecs.items i where i.tenant_id = t and i.external_id = why_not.context_item;
        if ctx_id is null then
            raise exception 'unknown item: %', why_not.context_item using errcode = 'P0002';
        end if;
        anchor_ids := array[ctx_id];
        anchor_weights := array[1]::real[];
        anchor_labels := array[null]::text[];  -- the page's item, as recs.recommend_for_item passes it
        exclude_ids := array[ctx_id];
    else
        -- a user never seen is a new visitor (ctx_id null, no history): the cold-start list, as
        -- recs.recommend_for_user serves it
        select u.user_id into ctx_id from pgrecs.users u where u.tenant_id = t and u.external_id = why_not.context_user;
        select coalesce(array_agg(h.item_id order by h.ord), '{}'),
               coalesce(array_agg(h.weight order by h.ord), '{}'),
               coalesce(array_agg(h.label order by h.ord), '{}'),
               coalesce(array_agg(h.recency_position order by h.ord), '{}')
        into anchor_ids, anchor_weights, anchor_labels, anchor_positions
        from pgrecs.user_history(ctx_id, p.placement)
             with ordinality as h (item_id, weight, label, purchased, recency_position, ord);
        if not p.allow_repeats then
            select coalesce(array_agg(distinct e.item_id), '{}') into purchased_ids
            from pgrecs.events e
            where e.tenant_id = t and e.user_id = ctx_id and e.event_type = 'purchase';
            exclude_ids := purchased_ids || anchor_ids;
        end if;
    end if;

    -- 0. the list as served
    select coalesce(array_agg(x.item_id order by x.rank), '{}'), coalesce(array_agg(x.score order by x.rank), '{}')
    into shown_ids, shown_scores
    from pgrecs.rank_items(p.placement, anchor_ids, anchor_weights, anchor_labels, exclude_ids,
                           why_not.k, why_not.filters, false, anchor_positions) x;
    kth := shown_scores[cardinality(shown_scores)];
    pos := array_position(shown_ids, it.item_id);
    if pos is not null then
        return query select 'shown', format('shown at position %s of %s (score %s)', pos, cardinality(shown_ids),
                                            round(shown_scores[pos]::numeric, 4)),
                            0, pos, shown_scores[pos], kth, null::bigint, '{}'::jsonb;
        return;
    end if;

    -- 1. exclusions of the context
    if it.item_id = any(exclude_ids) then
        found_any := true;
        return query select 'excluded',
            case when why_not.context_item is not null then 'it is the item the list is shown for'
                 when it.item_id = any(purchased_ids) then 'the user bought it, and the placement does not allow repeats'
                 else 'it is in the user''s history, which the list is built from (the placement does not allow repeats)'
            end, 1, null::integer, null::double precision, kth, null::bigint, '{}'::jsonb;
    end if;

    -- 2. filters: the placement's default filters and the request's (pgrecs.item_passes, test by test)
    f := p.default_filters || pgrecs.check_filters(why_not.filters);
    f_in_stock := coalesce((f ->> 'in_stock')::boolean, false);
    f_price_min := (f ->> 'price_min')::numeric;
    f_price_max := (f ->> 'price_max')::numeric;
    f_category := f ->> 'category';
    f_brand := f ->> 'brand';
    f_brands := f -> 'brands';
    f_exclude_brands := f -> 'exclude_brands';
    f_exclude := f -> 'exclude';
    if not coalesce(pgrecs.item_passes(it, f_in_stock, f_price_min, f_price_max, f_category, f_brand,
                                       f_brands, f_exclude_brands, f_exclude), false) then
        found_any := true;
        return query
        select x.reason, x.detail, 2, null::integer, null::double precision, kth, null::bigint, x.facts
        from (values
            (1, 'inactive', 'the item is inactive', not it.active, '{}'::jsonb),
            (2, 'out_of_stock', format('out of stock (stock %s) and the placement shows in-stock items only', it.stock),
             f_in_stock and coalesce(it.stock, 1) <= 0, jsonb_build_object('stock', it.stock)),
            (3, 'price', format('price %s is outside the price filter [%s, %s]', coalesce(it.price::text, 'unknown'),
                                coalesce(f_price_min::text, '-'), coalesce(f_price_max::text, '-')),
             (f_price_min is not null and not coalesce(it.price >= f_price_min, false))
                 or (f_price_max is not null and not coalesce(it.price <= f_price_max, false)),
             jsonb_build_object('price', it.price, 'price_min', f_price_min, 'price_max', f_price_max)),
            (4, 'outside_category', format('outside the category filter %L (its category: %s)', f_category,
                                           coalesce(nullif(array_to_string(it.category_path, ' > '), ''), 'none')),
             f_category is not null and not coalesce(f_category = any(it.category_path), false),
             jsonb_build_object('category', f_category, 'category_path', it.category_path)),
            (5, 'brand', format('brand %s is not the brand filter''s', coalesce(it.brand, 'unknown')),
             (f_brand is not null and not coalesce(it.brand = f_brand, false))
                 or (f_brands is not null and not coalesce(f_brands ? it.brand, false))
                 or (f_exclude_brands is not null and coalesce(f_exclude_brands ? it.brand, false)),
             jsonb_build_object('brand', it.brand, 'filter', f - 'category' - 'price_min' - 'price_max' - 'in_stock' - 'exclude')),
            (6, 'excluded', 'the request excludes it (filter exclude)',
             f_exclude is not null and f_exclude @> (it.item_id::text)::jsonb, '{}'::jsonb)
        ) as x (ord, reason, detail, applies, facts)
        where x.applies
        order by x.ord;
    end if;

    -- 3. live block rules
    for r in
        select br.rule_id, br.name
        from pgrecs.business_rules br
        where br.tenant_id = t
          and br.enabled
          and br.kind = 'block'
          and (br.placement is null or br.placement = p.placement)
          and (br.starts_at is null or br.starts_at <= now())
          and (br.ends_at is null or now() < br.ends_at)
          and pgrecs.rule_matches(br.item_id, br.brand, br.category, br.min_margin, it)
        order by br.rule_id
    loop
        found_any := true;
        return query select 'blocked', format('blocked by rule %s (%s)', r.rule_id, r.name), 3, null::integer,
                            null::double precision, kth, r.rule_id, jsonb_build_object('rule', r.name);
    end loop;
    if found_any then
        return;
    end if;

    -- 4. candidates: the statements of rank_items step 1
    w := p.weights;
    lam := p.mmr_lambda;
    v_pool := case when lam < 1 or p.max_per_brand is not null or p.max_per_category is not null
                   then why_not.k * p.mmr_pool_factor else why_not.k end;
    v_model := coalesce(p.model_id, (select m.model_id from pgrecs.embedding_models m where m.is_default));

    select s.signals, s.kinds, s.weights, s.pools
    into sig_names, sig_kinds, sig_weights, sig_pools
    from pgrecs.placement_signals(p) as s;

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
    select coalesce(array_agg(x.cp order by x.w desc, x.cp), '{}') into anchor_cats
    from (
        select array_to_string(ai.category_path, chr(31)) as cp, max(a.weight) as w
        from unnest(anchor_ids, anchor_weights) as a (item_id, weight)
        join pgrecs.items ai on ai.item_id = a.item_id
        where a.weight > 0 and cardinality(ai.category_path) > 0
        group by 1
    ) x;

    cand_ids := h_item;
    if v_pop > 0 then
        more_ids := array(
            select y.item_id
            from (
                select x.item_id, pgrecs.item_passes(i, f_in_stock, f_price_min, f_price_max, f_category, f_brand,
                                    f_brands, f_exclude_brands, f_exclude) as ok
                from (
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

    -- 5. the score of every candidate: rank_items step 2 without the cut to the pool
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
        select i.item_id, i.brand, i.category_path, i.margin,
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
        select cb.item_id, sum(cb.contribution) as base
        from contributed cb
        group by cb.item_id
    ),
    boosted as (
        select c.item_id, exp(sum(ln(br.factor))) as factor
        from cand c
        join live_rules br on br.kind = 'boost'
         and (br.item_id is null or br.item_id = c.item_id)
         and (br.brand is null or br.brand = c.brand)
         and (br.category is null or br.category = any(c.category_path))
         and (br.min_margin is null or c.margin >= br.min_margin)
        group by c.item_id
    ),
    final as (
        select c.item_id, i.tie_key, c.brand, c.category_path[p.category_level] as cat,
               fu.base * coalesce(b.factor, 1) as score
        from cand c
        join pgrecs.items i on i.item_id = c.item_id
        join fused fu on fu.item_id = c.item_id
        left join boosted b on b.item_id = c.item_id
    )
    select array_agg(fi.item_id order by fi.score desc, fi.tie_key),
           array_agg(fi.score order by fi.score desc, fi.tie_key),
           array_agg(fi.brand order by fi.score desc, fi.tie_key),
           array_agg(fi.cat order by fi.score desc, fi.tie_key),
           (select jsonb_object_agg(cb.signal, jsonb_build_object('raw', cb.raw, 'signal_rank', cb.signal_rank,
                                                                  'contribution', cb.contribution))
            from contributed cb where cb.item_id = it.item_id)
    into ids, scores, brands, cats, target_breakdown
    from final fi;

    n := coalesce(cardinality(ids), 0);
    tpos := array_position(ids, it.item_id);

    if tpos is null then
        -- not a candidate: say, signal by signal (registry order), how close it came
        for sig, sig_kind in select * from unnest(sig_names, sig_kinds) loop
            if sig_kind = 'neighbors' then
                nb_rank := null;
                select x.rank, ai.title into nb_rank, nb_title
                from pgrecs.item_neighbors x
                join pgrecs.items ai on ai.item_id = x.item_id
                where x.tenant_id = t and x.signal = sig and x.item_id = any(anchor_ids)
                  and x.neighbor_item_id = it.item_id
                order by x.rank
                limit 1;
                if nb_rank is null then
                    notes := notes || format('%s: not a neighbour of %s', sig,
                        case when cardinality(anchor_ids) = 0 then 'any history item (the user has no history)'
                             when cardinality(anchor_ids) = 1 then format('"%s"', (select ai.title from pgrecs.items ai where ai.item_id = anchor_ids[1]))
                             else format('any of the %s history items', cardinality(anchor_ids)) end);
                else
                    notes := notes || format('%s: rank %s in the list of "%s", beyond the %s taken',
                                             sig, nb_rank, nb_title, sig_pools[array_position(sig_names, sig)]);
                end if;
            elsif sig in ('popularity', 'trending') then
                notes := notes || format('%s: %s', sig, coalesce((
                    select case when sg.popularity is null then 'no popularity yet'
                                when sig = 'trending' and coalesce(sg.trending, 0) <= 0 then 'not trending'
                                else format('rank %s among eligible items, beyond the %s taken',
                                            (select count(*) + 1 from pgrecs.item_signals s2
                                             join pgrecs.items i2 on i2.item_id = s2.item_id
                                             where s2.tenant_id = t
                                               and case when sig = 'popularity' then s2.popularity > sg.popularity
                                                        else s2.trending > sg.trending end
                                               and pgrecs.item_matches_filters(i2, f)),
                                            sig_pools[array_position(sig_names, sig)]) end
                    from pgrecs.item_signals sg where sg.item_id = it.item_id), 'no popularity yet'));
            elsif sig = 'category_popularity' then
                notes := notes || format('category_popularity: %s',
                    case when not (array_to_string(it.category_path, chr(31)) = any(anchor_cats[1:5]))
                         then 'its category is not one of the context''s'
                         else format('not among the %s most popular of its category', v_catpop) end);
            end if;
        end loop;
        if it.item_id = any(cand_ids) then
            return query select 'no_score', 'a candidate, but no weighted signal scores it above 0', 4,
                                null::integer, null::double precision, kth, null::bigint,
                                jsonb_build_object('signals', to_jsonb(notes));
        elsif coalesce((w ->> 'semantic')::double precision, 0) <> 0 and v_model is not null
              and not exists (select 1 from pgrecs.item_embeddings e where e.item_id = it.item_id and e.model_id = v_model) then
            return query
            select 'no_embedding',
                   format('no embedding for model %s (%s), so it is no semantic neighbour; %s', m.name,
                          coalesce('not embeddable: ' || ne.reason,
                                   'waiting in the embedding queue since ' || to_char(q.enqueued_at, 'YYYY-MM-DD HH24:MI'),
                                   'not embedded yet: run pgrecs embed'),
                          array_to_string(notes, '; ')),
                   4, null::integer, null::double precision, kth, null::bigint,
                   jsonb_build_object('model', m.name, 'not_embeddable', ne.reason, 'queued_at', q.enqueued_at,
                                      'signals', to_jsonb(notes))
            from pgrecs.embedding_models m
            left join pgrecs.not_embeddable ne on ne.item_id = it.item_id and ne.model_id = m.model_id
            left join pgrecs.embedding_queue q on q.item_id = it.item_id and q.model_id = m.model_id
            where m.model_id = v_model;
        else
            return query select 'not_candidate', 'not a candidate of any signal: ' || array_to_string(notes, '; '), 4,
                                null::integer, null::double precision, kth, null::bigint,
                                jsonb_build_object('signals', to_jsonb(notes));
        end if;
        return;
    end if;

    if tpos > v_pool then
        return query select 'ranked', format('ranked %s of %s by score (%s), below the %s kept for the list; the %s-th shown scores %s',
                                             tpos, n, round(scores[tpos]::numeric, 4), v_pool, cardinality(shown_ids),
                                             round(kth::numeric, 4)),
                            5, tpos, scores[tpos], kth, null::bigint, jsonb_build_object('contributions', target_breakdown);
        return;
    end if;

    -- 6. MMR with caps over the pool: rank_items step 3, watching the item
    n := v_pool;
    if cardinality(ids) < n then
        n := cardinality(ids);
    end if;
    ids := ids[1:n];
    scores := scores[1:n];
    brands := brands[1:n];
    cats := cats[1:n];
    picked := array_fill(false, array[n]);
    maxsim := array_fill(0::double precision, array[n]);
    maxrel := greatest((select max(abs(x)) from unnest(scores) x), 1e-12);
    if lam < 1 and n > 1 and v_model is not null then
        select array_agg(ie.embedding order by o.i) into embs
        from unnest(ids) with ordinality as o (id, i)
        left join pgrecs.item_embeddings ie on ie.item_id = o.id and ie.model_id = v_model;
    end if;
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
    while cardinality(sel) < why_not.k loop
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
            capped := false;
            continue;
        end if;
        -- the item lost this pick to a cap (it would have won it) or to diversity (a less relevant item won)
        if not picked[tpos] and best <> tpos then
            val := rel[tpos] - (1 - lam) * maxsim[tpos];
            if capped and ((b_idx[tpos] > 0 and b_cnt[b_idx[tpos]] >= max_b)
                           or (c_idx[tpos] > 0 and c_cnt[c_idx[tpos]] >= max_c)) then
                if cap_kind is null and val > best_val then
                    cap_kind := case when b_idx[tpos] > 0 and b_cnt[b_idx[tpos]] >= max_b then 'brand' else 'category' end;
                    cap_step := cardinality(sel) + 1;
                end if;
            elsif mmr_over is null and rel[tpos] > rel[best] then
                mmr_over := best;
                mmr_step := cardinality(sel) + 1;
            end if;
        end if;
        picked[best] := true;
        sel := sel || best;
        if b_idx[best] > 0 then
            b_cnt[b_idx[best]] := b_cnt[b_idx[best]] + 1;
        end if;
        if c_idx[best] > 0 then
            c_cnt[c_idx[best]] := c_cnt[c_idx[best]] + 1;
        end if;
        if embs is not null and embs[best] is not null and cardinality(sel) < why_not.k then
            select array_agg(greatest(maxsim[x.i], coalesce(1 - (x.e <=> embs[best]), 0)) order by x.i)
            into maxsim
            from unnest(embs) with ordinality as x (e, i);
        end if;
    end loop;

    if not picked[tpos] then
        if cap_kind = 'brand' then
            return query select 'capped', format('removed by the brand cap: at most %s items of brand %s, and %s more relevant ones were chosen',
                                                 p.max_per_brand, brands[tpos], p.max_per_brand),
                                6, tpos, scores[tpos], kth, null::bigint,
                                jsonb_build_object('cap', 'brand', 'max', p.max_per_brand, 'brand', brands[tpos], 'pick', cap_step);
        elsif cap_kind = 'category' then
            return query select 'capped', format('removed by the category cap: at most %s items of category %s, and %s more relevant ones were chosen',
                                                 p.max_per_category, cats[tpos], p.max_per_category),
                                6, tpos, scores[tpos], kth, null::bigint,
                                jsonb_build_object('cap', 'category', 'max', p.max_per_category, 'category', cats[tpos], 'pick', cap_step);
        elsif mmr_over is not null then
            return query
            select 'mmr', format('removed by diversity (MMR, lambda %s): too similar to "%s" (similarity %s), so the less relevant "%s" took pick %s',
                                 lam, sim.title, round(sim.similarity::numeric, 3), ov.title, mmr_step),
                   6, tpos, scores[tpos], kth, null::bigint,
                   jsonb_build_object('lambda', lam, 'most_similar', sim.external_id, 'similarity', sim.similarity,
                                      'chosen_instead', ov.external_id, 'pick', mmr_step)
            from (select i2.title, i2.external_id from pgrecs.items i2 where i2.item_id = ids[mmr_over]) ov
            left join lateral (
                select i3.title, i3.external_id, 1 - (embs[s.i] <=> embs[tpos]) as similarity
                from unnest(sel) as s (i)
                join pgrecs.items i3 on i3.item_id = ids[s.i]
                where embs[s.i] is not null and embs[tpos] is not null
                order by embs[s.i] <=> embs[tpos]
                limit 1
            ) sim on true;
        else
            return query select 'ranked', format('ranked %s of %s by score (%s), below the top %s; the %s-th shown scores %s',
                                                 tpos, cardinality(scores), round(scores[tpos]::numeric, 4), why_not.k,
                                                 cardinality(shown_ids), round(kth::numeric, 4)),
                                5, tpos, scores[tpos], kth, null::bigint, jsonb_build_object('contributions', target_breakdown);
        end if;
        return;
    end if;

    -- 7. chosen, then pushed out by pins: rank_items step 4
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
        continue when r.item_id = any(pins) or r.position > why_not.k;
        slot := r.position;
        while slot = any(pin_pos) loop
            slot := slot + 1;
        end loop;
        continue when slot > why_not.k;
        pins := pins || r.item_id;
        pin_pos := pin_pos || slot;
    end loop;
    return query select 'pinned_out', format('chosen at pick %s, then pushed past position %s by %s pinned items',
                                             array_position(sel, tpos), why_not.k, cardinality(pins)),
                        7, array_position(sel, tpos), scores[tpos], kth, null::bigint,
                        jsonb_build_object('pins', (select jsonb_agg(pi.external_id) from unnest(pins) pn (id)
                                                    join pgrecs.items pi on pi.item_id = pn.id));
end
$$;
comment on function pgrecs.why_not(text, text, text, text, integer, jsonb) is
    'The body of recs.why_not (the public function, documented there).';
