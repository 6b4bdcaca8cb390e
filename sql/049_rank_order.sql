-- The order of the list, the third and fourth stages of pgrecs.rank_items (and of recs.why_not):
-- diversity (greedy maximal marginal relevance on embeddings) with brand and category caps over
-- the pool, then the pins of the live rules.

create or replace function pgrecs.rank_diversify(
    ids bigint[],
    scores double precision[],
    brands text[],
    categories text[],
    model smallint,
    mmr_lambda double precision,
    max_per_brand integer,
    max_per_category integer,
    k integer,
    watch integer default null,
    out picks integer[],
    out max_relevance double precision,
    out watch_cap text,
    out watch_cap_pick integer,
    out watch_lost_to integer,
    out watch_lost_pick integer
)
language plpgsql
stable parallel safe
as $$
#variable_conflict use_column
-- One pass: each pick takes the pool position of the best relevance - (1 - lambda) * (highest
-- similarity to a pick so far); caps are kept while the pool allows, and when they would leave
-- the list shorter than k, the rest of the pool fills it in MMR order (a list has k items
-- whenever k eligible items exist). watch (a pool position, for recs.why_not) reports the first
-- pick the item lost to a cap it would have won (watch_cap: brand or category) and the first it
-- lost to diversity (watch_lost_to: the less relevant position that took it).
declare
    n integer := coalesce(cardinality(ids), 0);
    lam double precision := mmr_lambda;
    embs halfvec[];
    maxsim double precision[];
    picked boolean[];
    rel double precision[];
    b_idx integer[];
    c_idx integer[];
    b_cnt integer[];
    c_cnt integer[];
    max_b integer := coalesce(max_per_brand, 2147483647);
    max_c integer := coalesce(max_per_category, 2147483647);
    capped boolean := true;
    best integer;
    best_val double precision;
    val double precision;
begin
    picks := '{}';
    if n = 0 then
        return;
    end if;
    picked := array_fill(false, array[n]);
    maxsim := array_fill(0::double precision, array[n]);
    max_relevance := greatest((select max(abs(x)) from unnest(scores) x), 1e-12);
    if lam < 1 and n > 1 and model is not null then
        -- the pool's embeddings, read once; similarities are computed per pick (k x n, not n x n)
        select array_agg(ie.embedding order by o.i) into embs
        from unnest(ids) with ordinality as o (id, i)
        left join pgrecs.item_embeddings ie on ie.item_id = o.id and ie.model_id = model;
    end if;
    -- relevance and brand/category numbers per pool position, so the greedy loop below only
    -- reads integer and float arrays
    select array_agg(lam * x.s / max_relevance order by x.i),
           array_agg(x.bi order by x.i),
           array_agg(x.ci order by x.i)
    into rel, b_idx, c_idx
    from (
        select u.i, u.s,
               case when u.b is null then 0 else dense_rank() over (order by u.b) end as bi,
               case when u.c is null then 0 else dense_rank() over (order by u.c) end as ci
        from unnest(scores, brands, categories) with ordinality as u (s, b, c, i)
    ) x;
    b_cnt := array_fill(0, array[n]);
    c_cnt := array_fill(0, array[n]);
    while cardinality(picks) < k loop
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
        if watch is not null and not picked[watch] and best <> watch then
            -- the watched item lost this pick to a cap (it would have won it) or to diversity (a
            -- less relevant item won)
            val := rel[watch] - (1 - lam) * maxsim[watch];
            if capped and ((b_idx[watch] > 0 and b_cnt[b_idx[watch]] >= max_b)
                           or (c_idx[watch] > 0 and c_cnt[c_idx[watch]] >= max_c)) then
                if watch_cap is null and val > best_val then
                    watch_cap := case when b_idx[watch] > 0 and b_cnt[b_idx[watch]] >= max_b
                                      then 'brand' else 'category' end;
                    watch_cap_pick := cardinality(picks) + 1;
                end if;
            elsif watch_lost_to is null and rel[watch] > rel[best] then
                watch_lost_to := best;
                watch_lost_pick := cardinality(picks) + 1;
            end if;
        end if;
        picked[best] := true;
        picks := picks || best;
        if b_idx[best] > 0 then
            b_cnt[b_idx[best]] := b_cnt[b_idx[best]] + 1;
        end if;
        if c_idx[best] > 0 then
            c_cnt[c_idx[best]] := c_cnt[c_idx[best]] + 1;
        end if;
        if embs is not null and embs[best] is not null and cardinality(picks) < k then
            select array_agg(greatest(maxsim[x.i], coalesce(1 - (x.e <=> embs[best]), 0)) order by x.i)
            into maxsim
            from unnest(embs) with ordinality as x (e, i);
        end if;
    end loop;
end
$$;
comment on function pgrecs.rank_diversify(bigint[], double precision[], text[], text[], smallint, double precision, integer, integer, integer, integer) is
    'Diversity of rank_items (stage 3): the k picks (pool positions, in order) of greedy MMR on the model''s embeddings with at most max_per_brand / max_per_category per brand / category, filled past the caps when they would leave fewer than k; max_relevance scales the scores; watch (a pool position) reports the first pick that item lost to a cap or to diversity.';

create or replace function pgrecs.rank_pins(
    tenant text,
    placement_name text,
    filters pgrecs.item_filter,
    exclude_ids bigint[],
    k integer,
    out items bigint[],
    out positions integer[],
    out names text[]
)
language plpgsql
stable parallel safe
as $$
#variable_conflict use_column
declare
    f_in_stock boolean := coalesce(filters.in_stock, false);
    f_price_min numeric := filters.price_min;
    f_price_max numeric := filters.price_max;
    f_category text[] := filters.category;
    f_brand text := filters.brand;
    f_brands text[] := filters.brands;
    f_exclude_brands text[] := filters.exclude_brands;
    f_exclude bigint[] := filters.exclude;
    r record;
    slot integer;
begin
    items := '{}';
    positions := '{}';
    names := '{}';
    -- live pin rules whose item passes the filters, is not excluded and not blocked; a pin whose
    -- position is taken moves to the next free one
    for r in
        select br.item_id, br.position, br.name
        from pgrecs.live_rules(tenant, placement_name) br
        join pgrecs.items i on i.item_id = br.item_id
        where br.kind = 'pin'
          and i.tenant_id = tenant
          and pgrecs.item_passes(i, f_in_stock, f_price_min, f_price_max, f_category, f_brand,
                                 f_brands, f_exclude_brands, f_exclude)
          and not (i.item_id = any(exclude_ids))
          and not exists (
              select 1 from pgrecs.live_rules(tenant, placement_name) bb
              where bb.kind = 'block'
                and pgrecs.rule_matches(bb.item_id, bb.brand, bb.category, bb.min_margin, i)
          )
        order by br.position, br.rule_id
    loop
        continue when r.item_id = any(items) or r.position > k;
        slot := r.position;
        while slot = any(positions) loop
            slot := slot + 1;
        end loop;
        continue when slot > k;
        items := items || r.item_id;
        positions := positions || slot;
        names := names || r.name;
    end loop;
end
$$;
comment on function pgrecs.rank_pins(text, text, pgrecs.item_filter, bigint[], integer) is
    'Pins of rank_items (stage 4): the live pin rules (pgrecs.live_rules) whose item passes the filters and is neither excluded nor blocked, by position then rule id, each at its position or the next free one within k; as arrays (item, position, rule name).';
