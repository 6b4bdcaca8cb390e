-- Why not: the exact reason an item is missing from a placement's top k for a context.
--
-- recs.why_not follows pgrecs.rank_items (sql/050_scoring.sql) stage by stage: the context's
-- anchors and exclusions (as recs.recommend_for_item / recs.recommend_for_user build them), the
-- filters, the live blocks (pgrecs.live_rules), then the stage functions of rank_items
-- themselves: the candidates of every signal (pgrecs.rank_candidates), the fused and boosted
-- score over all candidates (pgrecs.rank_pool without the cut to the pool), the greedy MMR pass
-- with brand and category caps over the pool, watching the item (pgrecs.rank_diversify), and the
-- pins (pgrecs.rank_pins). So the two agree on every tie; tests/test_why_not.py checks each
-- reason and that recs.why_not says "shown at position p" exactly for the items rank_items returns.

create or replace function pgrecs.why_not_candidate(
    tenant text,
    item_id bigint,
    anchor_ids bigint[],
    signals text[],
    pools integer[],
    kinds text[],
    anchor_categories text[],
    candidates bigint[],
    filters pgrecs.item_filter,
    model smallint
)
returns table (reason text, detail text, facts jsonb)
language plpgsql
stable parallel safe
as $$
#variable_conflict use_column
declare
    it pgrecs.items;
    notes text[] := '{}';
    sig text;
    nb_rank integer;
    nb_title text;
begin
    select * into it from pgrecs.items i where i.item_id = why_not_candidate.item_id;
    -- signal by signal, how close it came
    for j in 1 .. coalesce(cardinality(signals), 0) loop
        sig := signals[j];
        if kinds[j] = 'neighbors' then
            nb_rank := null;
            select x.rank, ai.title into nb_rank, nb_title
            from pgrecs.item_neighbors x
            join pgrecs.items ai on ai.item_id = x.item_id
            where x.tenant_id = tenant and x.signal = sig and x.item_id = any(anchor_ids)
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
                                         sig, nb_rank, nb_title, pools[j]);
            end if;
        elsif sig in ('popularity', 'trending') then
            notes := notes || format('%s: %s', sig, coalesce((
                select case when sg.popularity is null then 'no popularity yet'
                            when sig = 'trending' and coalesce(sg.trending, 0) <= 0 then 'not trending'
                            else format('rank %s among eligible items, beyond the %s taken',
                                        (select count(*) + 1 from pgrecs.item_signals s2
                                         join pgrecs.items i2 on i2.item_id = s2.item_id
                                         where s2.tenant_id = tenant
                                           and case when sig = 'popularity' then s2.popularity > sg.popularity
                                                    else s2.trending > sg.trending end
                                           and pgrecs.item_matches_filters(i2, filters)),
                                        pools[j]) end
                from pgrecs.item_signals sg where sg.item_id = it.item_id), 'no popularity yet'));
        elsif sig = 'category_popularity' then
            notes := notes || format('category_popularity: %s',
                case when not (array_to_string(it.category_path, chr(31)) = any(anchor_categories[1:5]))
                     then 'its category is not one of the context''s'
                     else format('not among the %s most popular of its category', pools[j]) end);
        end if;
    end loop;
    if it.item_id = any(candidates) then
        return query select 'no_score', 'a candidate, but no weighted signal scores it above 0',
                            jsonb_build_object('signals', to_jsonb(notes));
    elsif 'semantic' = any(signals) and model is not null
          and not exists (select 1 from pgrecs.item_embeddings e where e.item_id = it.item_id and e.model_id = model) then
        return query
        select 'no_embedding',
               format('no embedding for model %s (%s), so it is no semantic neighbour; %s', m.name,
                      coalesce('not embeddable: ' || ne.reason,
                               'waiting in the embedding queue since ' || to_char(q.enqueued_at, 'YYYY-MM-DD HH24:MI'),
                               'not embedded yet: run pgrecs embed'),
                      array_to_string(notes, '; ')),
               jsonb_build_object('model', m.name, 'not_embeddable', ne.reason, 'queued_at', q.enqueued_at,
                                  'signals', to_jsonb(notes))
        from pgrecs.embedding_models m
        left join pgrecs.not_embeddable ne on ne.item_id = it.item_id and ne.model_id = m.model_id
        left join pgrecs.embedding_queue q on q.item_id = it.item_id and q.model_id = m.model_id
        where m.model_id = model;
    else
        return query select 'not_candidate', 'not a candidate of any signal: ' || array_to_string(notes, '; '),
                            jsonb_build_object('signals', to_jsonb(notes));
    end if;
end
$$;
comment on function pgrecs.why_not_candidate(text, bigint, bigint[], text[], integer[], text[], text[], bigint[], pgrecs.item_filter, smallint) is
    'Stage 4 of recs.why_not, for an item that rank_items did not score: no_score (a candidate no weighted signal scores above 0), no_embedding (and why) or not_candidate, with a note per signal on how close it came (its rank in the anchors'' lists, among eligible items, or in its category).';

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
    f pgrecs.item_filter;
    f_in_stock boolean;
    f_price_min numeric;
    f_price_max numeric;
    f_category text[];
    f_brand text;
    f_brands text[];
    f_exclude_brands text[];
    f_exclude bigint[];
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
    sigs record;      -- pgrecs.rank_signals
    cand record;      -- pgrecs.rank_candidates
    pool record;      -- pgrecs.rank_pool
    mmr record;       -- pgrecs.rank_diversify
    pin record;       -- pgrecs.rank_pins
    target_breakdown jsonb;
    n integer;
    tpos integer;
    found_any boolean := false;
    r record;
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
        select i.item_id into ctx_id
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
    f := pgrecs.parse_filters(p.default_filters || coalesce(why_not.filters, '{}'));
    f_in_stock := coalesce(f.in_stock, false);
    f_price_min := f.price_min;
    f_price_max := f.price_max;
    f_category := f.category;
    f_brand := f.brand;
    f_brands := f.brands;
    f_exclude_brands := f.exclude_brands;
    f_exclude := f.exclude;
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
            (4, 'outside_category', format('outside the category filter %L (its category: %s)',
                                           array_to_string(f_category, ' > '),
                                           coalesce(nullif(array_to_string(it.category_path, ' > '), ''), 'none')),
             f_category is not null and not coalesce(it.category_path[1:cardinality(f_category)] = f_category, false),
             jsonb_build_object('category', f_category, 'category_path', it.category_path)),
            (5, 'brand', format('brand %s is not the brand filter''s', coalesce(it.brand, 'unknown')),
             (f_brand is not null and not coalesce(it.brand = f_brand, false))
                 or (f_brands is not null and not coalesce(it.brand = any(f_brands), false))
                 or (f_exclude_brands is not null and coalesce(it.brand = any(f_exclude_brands), false)),
             jsonb_build_object('brand', it.brand, 'filter', jsonb_strip_nulls(jsonb_build_object(
                 'brand', f_brand, 'brands', f_brands, 'exclude_brands', f_exclude_brands)))),
            (6, 'excluded', 'the request excludes it (filter exclude)',
             f_exclude is not null and it.item_id = any(f_exclude), '{}'::jsonb)
        ) as x (ord, reason, detail, applies, facts)
        where x.applies
        order by x.ord;
    end if;

    -- 3. live block rules
    for r in
        select br.rule_id, br.name
        from pgrecs.live_rules(t, p.placement) br
        where br.kind = 'block'
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

    -- 4. candidates: rank_items stage 1
    lam := p.mmr_lambda;
    v_pool := case when lam < 1 or p.max_per_brand is not null or p.max_per_category is not null
                   then why_not.k * p.mmr_pool_factor else why_not.k end;
    v_model := coalesce(p.model_id, (select m.model_id from pgrecs.embedding_models m where m.is_default));
    select * into sigs from pgrecs.rank_signals(p.placement, p.weights, p.pool_sizes);
    select * into cand
    from pgrecs.rank_candidates(t, anchor_ids, anchor_weights, anchor_positions, exclude_ids,
                                sigs.signals, sigs.pools, sigs.kinds, f);

    -- 5. the score of every candidate: rank_items stage 2 without the cut to the pool
    select * into pool
    from pgrecs.rank_pool(t, p, sigs.signals, sigs.signal_weights, cand.neighbor_items, cand.neighbor_signals,
                          cand.neighbor_scores, cand.neighbor_anchors, cand.candidates, cand.anchor_categories,
                          exclude_ids, f, null);
    n := coalesce(cardinality(pool.ids), 0);
    tpos := array_position(pool.ids, it.item_id);
    select jsonb_object_agg(d.signal, jsonb_build_object('raw', d.raw, 'signal_rank', d.rnk, 'contribution', d.contrib))
    into target_breakdown
    from unnest(pool.d_pos, pool.d_signal, pool.d_raw, pool.d_rank, pool.d_contrib) as d (pos, signal, raw, rnk, contrib)
    where d.pos = tpos;

    if tpos is null then
        return query
        select x.reason, x.detail, 4, null::integer, null::double precision, kth, null::bigint, x.facts
        from pgrecs.why_not_candidate(t, it.item_id, anchor_ids, sigs.signals, sigs.pools, sigs.kinds,
                                      cand.anchor_categories, cand.candidates, f, v_model) x;
        return;
    end if;

    if tpos > v_pool then
        return query select 'ranked', format('ranked %s of %s by score (%s), below the %s kept for the list; the %s-th shown scores %s',
                                             tpos, n, round(pool.scores[tpos]::numeric, 4), v_pool, cardinality(shown_ids),
                                             round(kth::numeric, 4)),
                            5, tpos, pool.scores[tpos], kth, null::bigint, jsonb_build_object('contributions', target_breakdown);
        return;
    end if;

    -- 6. MMR with caps over the pool: rank_items stage 3, watching the item
    n := least(v_pool, n);
    select * into mmr
    from pgrecs.rank_diversify(pool.ids[1:n], pool.scores[1:n], pool.brands[1:n], pool.categories[1:n], v_model, lam,
                               p.max_per_brand, p.max_per_category, why_not.k, tpos);

    if not (tpos = any(mmr.picks)) then
        if mmr.watch_cap = 'brand' then
            return query select 'capped', format('removed by the brand cap: at most %s items of brand %s, and %s more relevant ones were chosen',
                                                 p.max_per_brand, pool.brands[tpos], p.max_per_brand),
                                6, tpos, pool.scores[tpos], kth, null::bigint,
                                jsonb_build_object('cap', 'brand', 'max', p.max_per_brand, 'brand', pool.brands[tpos], 'pick', mmr.watch_cap_pick);
        elsif mmr.watch_cap = 'category' then
            return query select 'capped', format('removed by the category cap: at most %s items of category %s, and %s more relevant ones were chosen',
                                                 p.max_per_category, pool.categories[tpos], p.max_per_category),
                                6, tpos, pool.scores[tpos], kth, null::bigint,
                                jsonb_build_object('cap', 'category', 'max', p.max_per_category, 'category', pool.categories[tpos], 'pick', mmr.watch_cap_pick);
        elsif mmr.watch_lost_to is not null then
            return query
            select 'mmr', format('removed by diversity (MMR, lambda %s): too similar to "%s" (similarity %s), so the less relevant "%s" took pick %s',
                                 lam, sim.title, round(sim.similarity::numeric, 3), ov.title, mmr.watch_lost_pick),
                   6, tpos, pool.scores[tpos], kth, null::bigint,
                   jsonb_build_object('lambda', lam, 'most_similar', sim.external_id, 'similarity', sim.similarity,
                                      'chosen_instead', ov.external_id, 'pick', mmr.watch_lost_pick)
            from (select i2.title, i2.external_id from pgrecs.items i2 where i2.item_id = pool.ids[mmr.watch_lost_to]) ov
            left join lateral (
                -- the most similar of the picks
                select i3.title, i3.external_id, 1 - (e.embedding <=> te.embedding) as similarity
                from unnest(mmr.picks) as s (i)
                join pgrecs.items i3 on i3.item_id = pool.ids[s.i]
                join pgrecs.item_embeddings e on e.item_id = i3.item_id and e.model_id = v_model
                join pgrecs.item_embeddings te on te.item_id = it.item_id and te.model_id = v_model
                order by e.embedding <=> te.embedding, s.i
                limit 1
            ) sim on true;
        else
            return query select 'ranked', format('ranked %s of %s by score (%s), below the top %s; the %s-th shown scores %s',
                                                 tpos, n, round(pool.scores[tpos]::numeric, 4), why_not.k,
                                                 cardinality(shown_ids), round(kth::numeric, 4)),
                                5, tpos, pool.scores[tpos], kth, null::bigint, jsonb_build_object('contributions', target_breakdown);
        end if;
        return;
    end if;

    -- 7. chosen, then pushed out by pins: rank_items stage 4
    select * into pin from pgrecs.rank_pins(t, p.placement, f, exclude_ids, why_not.k);
    return query select 'pinned_out', format('chosen at pick %s, then pushed past position %s by %s pinned items',
                                             array_position(mmr.picks, tpos), why_not.k, cardinality(pin.items)),
                        7, array_position(mmr.picks, tpos), pool.scores[tpos], kth, null::bigint,
                        jsonb_build_object('pins', (select jsonb_agg(pi.external_id) from unnest(pin.items) pn (id)
                                                    join pgrecs.items pi on pi.item_id = pn.id));
end
$$;
comment on function pgrecs.why_not(text, text, text, text, integer, jsonb) is
    'The body of recs.why_not (the public function, documented there).';
