-- Filters: the recommendation filters (pgrecs.check_filters, item_passes, item_matches_filters),
-- business-rule matching and the placement row, used by pgrecs.rank_items and recs.why_not; and
-- the similarity filters (pgrecs.check_similarity_filters, filter_category, similarity_filter_sql)
-- used by pgrecs.semantic_search.

-------------------------------------------------------------------------------------------------
-- Recommendation filters, rules and placements
-------------------------------------------------------------------------------------------------

create or replace function pgrecs.check_filters(filters jsonb)
returns jsonb
language plpgsql
immutable parallel safe
as $$
declare
    key text;
begin
    if filters is null then
        return '{}'::jsonb;
    end if;
    if jsonb_typeof(filters) <> 'object' then
        raise exception 'filters must be a JSON object' using errcode = '22023';
    end if;
    for key in select jsonb_object_keys(filters) loop
        if key not in ('category', 'brand', 'brands', 'exclude_brands', 'price_min', 'price_max',
                       'in_stock', 'exclude') then
            raise exception 'unknown filter: %', key
                using errcode = '22023',
                      hint = 'filters: category, brand, brands, exclude_brands, price_min, price_max, in_stock, exclude';
        end if;
    end loop;
    if filters ? 'price_min' and jsonb_typeof(filters -> 'price_min') not in ('number', 'null')
       or filters ? 'price_max' and jsonb_typeof(filters -> 'price_max') not in ('number', 'null') then
        raise exception 'price_min and price_max must be numbers' using errcode = '22023';
    end if;
    if filters ? 'in_stock' and jsonb_typeof(filters -> 'in_stock') not in ('boolean', 'null') then
        raise exception 'in_stock must be true or false' using errcode = '22023';
    end if;
    if filters ? 'category' and jsonb_typeof(filters -> 'category') not in ('string', 'null')
       or filters ? 'brand' and jsonb_typeof(filters -> 'brand') not in ('string', 'null') then
        raise exception 'category and brand must be strings' using errcode = '22023';
    end if;
    if filters ? 'brands' and jsonb_typeof(filters -> 'brands') <> 'array'
       or filters ? 'exclude_brands' and jsonb_typeof(filters -> 'exclude_brands') <> 'array' then
        raise exception 'brands and exclude_brands must be arrays of strings' using errcode = '22023';
    end if;
    if filters ? 'exclude' and (jsonb_typeof(filters -> 'exclude') <> 'array'
        or exists (select 1 from jsonb_array_elements(filters -> 'exclude') e where jsonb_typeof(e) <> 'number')) then
        raise exception 'exclude must be an array of item ids' using errcode = '22023';
    end if;
    return filters;
end
$$;
comment on function pgrecs.check_filters(jsonb) is
    'Validates a filters object (known keys, JSON types) and returns it; raises 22023 otherwise.';

create or replace function pgrecs.item_passes(
    i pgrecs.items, in_stock boolean, price_min numeric, price_max numeric, category text, brand text,
    brands jsonb, exclude_brands jsonb, exclude jsonb
)
returns boolean
language sql
immutable parallel safe
as $$
    select i.active
        and (not in_stock or coalesce(i.stock, 1) > 0)
        and (price_min is null or i.price >= price_min)
        and (price_max is null or i.price <= price_max)
        and (category is null or category = any(i.category_path))
        and (brand is null or i.brand = brand)
        and (brands is null or coalesce(brands ? i.brand, false))
        and (exclude_brands is null or not coalesce(exclude_brands ? i.brand, false))
        and (exclude is null or not exclude @> (i.item_id::text)::jsonb)
$$;
comment on function pgrecs.item_passes(pgrecs.items, boolean, numeric, numeric, text, text, jsonb, jsonb, jsonb) is
    'The filter rules, on values taken apart once per call (in_stock, price_min, price_max, category, brand, brands, exclude_brands, exclude): always active; in stock (null stock counts as in stock); price range; category at any level; brand(s); exclusions. Inlined into the scoring queries, it tests scalars per row; pgrecs.item_matches_filters is the same on a filters object.';

create or replace function pgrecs.item_matches_filters(i pgrecs.items, filters jsonb)
returns boolean
language sql
immutable parallel safe
as $$
    -- the filter rules live in pgrecs.item_passes; this only unpacks the jsonb
    select pgrecs.item_passes(
        i,
        coalesce((filters ->> 'in_stock')::boolean, false),
        (filters ->> 'price_min')::numeric,
        (filters ->> 'price_max')::numeric,
        filters ->> 'category',
        filters ->> 'brand',
        filters -> 'brands',
        filters -> 'exclude_brands',
        filters -> 'exclude')
$$;
comment on function pgrecs.item_matches_filters(pgrecs.items, jsonb) is
    'Whether an item passes a filters object (the rules are pgrecs.item_passes). Only immutable operators, so the planner inlines it into the scoring queries (to_jsonb, being stable, blocked that and cost ~0.2 ms a row).';

create or replace function pgrecs.rule_matches(
    rule_item_id bigint, rule_brand text, rule_category text, rule_min_margin numeric, i pgrecs.items
)
returns boolean
language sql
immutable parallel safe
as $$
    select (rule_item_id is null or rule_item_id = i.item_id)
        and (rule_brand is null or rule_brand = i.brand)
        and (rule_category is null or rule_category = any(i.category_path))
        and (rule_min_margin is null or i.margin >= rule_min_margin)
$$;
comment on function pgrecs.rule_matches(bigint, text, text, numeric, pgrecs.items) is
    'Whether a business rule''s match columns (item, brand, category at any level, minimum margin) all match an item.';

create or replace function pgrecs.placement_row(placement_name text)
returns pgrecs.placements
language plpgsql
stable parallel safe
as $$
declare
    p pgrecs.placements;
begin
    select * into p
    from pgrecs.placements pl
    where pl.tenant_id = pgrecs.current_tenant()
      and pl.placement = placement_name;
    if not found then
        raise exception 'unknown placement: %', placement_name using errcode = 'P0002';
    end if;
    return p;
end
$$;
comment on function pgrecs.placement_row(text) is
    'The placement row of the current tenant; raises P0002 (no_data_found) for an unknown placement.';

-------------------------------------------------------------------------------------------------
-- Similarity filters
-------------------------------------------------------------------------------------------------

create or replace function pgrecs.check_similarity_filters(filters jsonb)
returns jsonb
language plpgsql
immutable parallel safe
as $$
declare
    key text;
begin
    if filters is null then
        return '{}'::jsonb;
    end if;
    if jsonb_typeof(filters) <> 'object' then
        raise exception 'filters must be a JSON object' using errcode = '22023';
    end if;
    for key in select jsonb_object_keys(filters) loop
        if key not in ('category', 'price_min', 'price_max', 'in_stock', 'active') then
            raise exception 'unknown filter: % (allowed: category, price_min, price_max, in_stock, active)', key
                using errcode = '22023';
        end if;
    end loop;
    if filters ? 'category' and jsonb_typeof(filters -> 'category') not in ('string', 'array') then
        raise exception 'filter category must be a string ("A > B") or an array of strings' using errcode = '22023';
    end if;
    if (filters ? 'price_min' and jsonb_typeof(filters -> 'price_min') <> 'number')
        or (filters ? 'price_max' and jsonb_typeof(filters -> 'price_max') <> 'number') then
        raise exception 'filters price_min and price_max must be numbers' using errcode = '22023';
    end if;
    if (filters ? 'in_stock' and jsonb_typeof(filters -> 'in_stock') not in ('boolean', 'null'))
        or (filters ? 'active' and jsonb_typeof(filters -> 'active') not in ('boolean', 'null')) then
        raise exception 'filters in_stock and active must be booleans' using errcode = '22023';
    end if;
    return filters;
end
$$;
comment on function pgrecs.check_similarity_filters(jsonb) is
    'Validate a similarity filter object (category, price_min, price_max, in_stock, active); raises 22023 on a bad one.';

create or replace function pgrecs.filter_category(filters jsonb)
returns text[]
language sql
immutable parallel safe
as $$
    select case jsonb_typeof(filters -> 'category')
        when 'string' then
            (select array_agg(btrim(part) order by ord)
             from unnest(string_to_array(filters ->> 'category', '>')) with ordinality as p(part, ord))
        when 'array' then
            (select array_agg(value order by ord)
             from jsonb_array_elements_text(filters -> 'category') with ordinality as p(value, ord))
    end
$$;
comment on function pgrecs.filter_category(jsonb) is
    'The category prefix of a filter object as a text array ("Books > Fiction" or ["Books", "Fiction"]); null when absent.';

-- The filter predicate shared by the strategies and the count, over pgrecs.item_embeddings e (whose
-- filter columns copy pgrecs.items: migration 0007); $2..$7 are tenant, active, category prefix,
-- price_min, price_max, in_stock. Only the clauses of filters present are written, so the planner
-- sees plain indexable conditions (no "$n is null or ..." branches), and a one-shot plan folds the
-- values in, so a partial HNSW index of a hot category (pgrecs.ensure_filter_index) can match.
create or replace function pgrecs.similarity_filter_sql(
    active boolean,
    category text[],
    price_min numeric,
    price_max numeric,
    in_stock boolean
)
returns text
language sql
immutable parallel safe
as $$
    select concat_ws(' and ',
        'e.tenant_id = $2',
        case when active is not null then 'e.active = $3' end,
        case when category is not null
            then 'e.category_path @> $4 and e.category_path[1:cardinality($4)] = $4' end,
        case when price_min is not null then 'e.price >= $5' end,
        case when price_max is not null then 'e.price <= $6' end,
        case when in_stock is not null then 'e.in_stock = $7' end)
$$;
comment on function pgrecs.similarity_filter_sql(boolean, text[], numeric, numeric, boolean) is
    'SQL text of the similarity filter predicate over pgrecs.item_embeddings e (or a relation with the same '
    'filter columns) for the filters given (non-null), parameters $2..$7; internal to semantic_search.';
