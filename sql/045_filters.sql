-- Filters: the one filter vocabulary (pgrecs.parse_filters into a pgrecs.item_filter), tested per
-- item by pgrecs.item_passes / item_matches_filters (pgrecs.rank_items, its stages, recs.why_not)
-- and written as a predicate by pgrecs.similarity_filter_sql (pgrecs.semantic_search);
-- business-rule matching and the placement row.

-------------------------------------------------------------------------------------------------
-- Filters, rules and placements
-------------------------------------------------------------------------------------------------

-- One vocabulary for every endpoint and function that filters items (the table in
-- docs/scoring.md): pgrecs.parse_filters turns a filters object into one pgrecs.item_filter
-- (the type is migration 0036's). `category` is a path prefix everywhere: "Books > Fiction",
-- ["Books", "Fiction"], or a bare "Books" (a one-level prefix), which is what the partial HNSW
-- indexes of hot categories (sql/032_filter_indexes.sql) are built over.
create or replace function pgrecs.parse_filters(filters jsonb)
returns pgrecs.item_filter
language plpgsql
immutable parallel safe
as $$
declare
    key text;
    f pgrecs.item_filter;
    v jsonb;
begin
    if filters is null or filters = 'null'::jsonb then
        return f;
    end if;
    if jsonb_typeof(filters) <> 'object' then
        raise exception 'filters must be a JSON object' using errcode = '22023';
    end if;
    for key in select jsonb_object_keys(filters) loop
        if key not in ('brand', 'brands', 'category', 'exclude', 'exclude_brands', 'in_stock', 'price_max',
                       'price_min') then
            raise exception 'unknown filter: % (known: brand, brands, category, exclude, exclude_brands, in_stock, price_max, price_min)', key
                using errcode = '22023';
        end if;
    end loop;

    v := filters -> 'category';
    if jsonb_typeof(v) = 'string' then
        f.category := array(select btrim(part)
                            from unnest(string_to_array(v #>> '{}', '>')) with ordinality as p(part, ord)
                            order by ord);
    elsif jsonb_typeof(v) = 'array'
          and not exists (select 1 from jsonb_array_elements(v) as e where jsonb_typeof(e) <> 'string') then
        f.category := array(select btrim(e) from jsonb_array_elements_text(v) with ordinality as p(e, ord) order by ord);
    elsif v is not null and jsonb_typeof(v) <> 'null' then
        f.category := '{}';
    end if;
    if f.category is not null and (cardinality(f.category) = 0 or '' = any(f.category)) then
        raise exception 'filter category must be a category path: "A > B" or an array of names'
            using errcode = '22023';
    end if;

    v := filters -> 'brand';
    if jsonb_typeof(v) = 'string' then
        f.brand := v #>> '{}';
    elsif v is not null and jsonb_typeof(v) <> 'null' then
        raise exception 'filter brand must be a string' using errcode = '22023';
    end if;
    foreach key in array array['brands', 'exclude_brands'] loop
        v := filters -> key;
        if v is not null and jsonb_typeof(v) <> 'null' and (jsonb_typeof(v) <> 'array'
            or exists (select 1 from jsonb_array_elements(v) as e where jsonb_typeof(e) <> 'string')) then
            raise exception 'filter % must be an array of brands (strings)', key using errcode = '22023';
        end if;
    end loop;
    if jsonb_typeof(filters -> 'brands') = 'array' then
        f.brands := array(select jsonb_array_elements_text(filters -> 'brands'));
    end if;
    if jsonb_typeof(filters -> 'exclude_brands') = 'array' then
        f.exclude_brands := array(select jsonb_array_elements_text(filters -> 'exclude_brands'));
    end if;

    foreach key in array array['price_min', 'price_max'] loop
        v := filters -> key;
        if v is not null and jsonb_typeof(v) not in ('number', 'null') then
            raise exception 'filter % must be a number', key using errcode = '22023';
        end if;
    end loop;
    f.price_min := (filters ->> 'price_min')::numeric;
    f.price_max := (filters ->> 'price_max')::numeric;
    if f.price_min > f.price_max then
        raise exception 'filter price_min must not exceed price_max' using errcode = '22023';
    end if;

    v := filters -> 'in_stock';
    if v is not null and jsonb_typeof(v) not in ('boolean', 'null') then
        raise exception 'filter in_stock must be true or false' using errcode = '22023';
    end if;
    -- false asks for nothing (not "out of stock only"): null, so no predicate is written
    f.in_stock := nullif((filters ->> 'in_stock')::boolean, false);

    v := filters -> 'exclude';
    if v is not null and jsonb_typeof(v) <> 'null' and (jsonb_typeof(v) <> 'array'
        or exists (select 1 from jsonb_array_elements(v) as e
                   where case when jsonb_typeof(e) <> 'number' then true
                              else (e #>> '{}')::numeric not between 1 and 9223372036854775807
                                   or (e #>> '{}')::numeric <> trunc((e #>> '{}')::numeric) end)) then
        raise exception 'filter exclude must be an array of internal item ids' using errcode = '22023';
    end if;
    if jsonb_typeof(v) = 'array' then
        f.exclude := array(select (jsonb_array_elements_text(v))::bigint);
    end if;
    return f;
end
$$;
comment on function pgrecs.parse_filters(jsonb) is
    'The filters object of every recommendation and similarity function as one pgrecs.item_filter: category (a path '
    'prefix: "A > B", ["A", "B"] or a bare "A"), brand, brands, exclude_brands, price_min, price_max, in_stock (true: '
    'in stock only), exclude (internal item ids). Null or {} filters nothing; an unknown key or a wrong type raises '
    '22023 with a one-line message.';

create or replace function pgrecs.item_passes(
    i pgrecs.items, in_stock boolean, price_min numeric, price_max numeric, category text[], brand text,
    brands text[], exclude_brands text[], exclude bigint[]
)
returns boolean
language sql
immutable parallel safe
as $$
    select i.active
        and (in_stock is not true or coalesce(i.stock, 1) > 0)
        and (price_min is null or i.price >= price_min)
        and (price_max is null or i.price <= price_max)
        and (category is null or i.category_path[1:cardinality(category)] = category)
        and (brand is null or i.brand = brand)
        and (brands is null or coalesce(i.brand = any(brands), false))
        and (exclude_brands is null or not coalesce(i.brand = any(exclude_brands), false))
        and (exclude is null or i.item_id <> all(exclude))
$$;
comment on function pgrecs.item_passes(pgrecs.items, boolean, numeric, numeric, text[], text, text[], text[], bigint[]) is
    'The filter rules on the fields of a pgrecs.item_filter (in_stock, price_min, price_max, category, brand, brands, exclude_brands, exclude): always active; in stock (null stock counts as in stock); price range; category path prefix; brand(s); exclusions. Inlined into the scoring queries, it tests scalars per row; pgrecs.item_matches_filters is the same on a pgrecs.item_filter.';

create or replace function pgrecs.item_matches_filters(i pgrecs.items, filters pgrecs.item_filter)
returns boolean
language sql
immutable parallel safe
as $$
    -- the filter rules live in pgrecs.item_passes; this only takes the composite apart
    select pgrecs.item_passes(
        i, filters.in_stock, filters.price_min, filters.price_max, filters.category, filters.brand,
        filters.brands, filters.exclude_brands, filters.exclude)
$$;
comment on function pgrecs.item_matches_filters(pgrecs.items, pgrecs.item_filter) is
    'Whether an item passes a parsed filter (pgrecs.parse_filters; the rules are pgrecs.item_passes). Only immutable operators, so the planner inlines it into the scoring queries.';

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
-- The similarity filter predicate
-------------------------------------------------------------------------------------------------

-- The filter predicate shared by the strategies and the count, over pgrecs.item_embeddings e (whose
-- filter columns copy pgrecs.items: migration 0007); $2..$7 are tenant, active, category prefix,
-- price_min, price_max, in_stock, $10..$13 brand, brands, exclude_brands, exclude (the fields of a
-- pgrecs.item_filter). Only the clauses of filters present are written, so the planner sees plain
-- indexable conditions (no "$n is null or ..." branches), and a one-shot plan folds the values in,
-- so a partial HNSW index of a hot category (pgrecs.ensure_filter_index) can match. Brands are not
-- copied onto the embeddings: they are read from the item row (a pkey lookup per candidate).
create or replace function pgrecs.similarity_filter_sql(
    active boolean,
    category text[],
    price_min numeric,
    price_max numeric,
    in_stock boolean,
    brand text default null,
    brands text[] default null,
    exclude_brands text[] default null,
    exclude bigint[] default null
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
        case when in_stock then 'e.in_stock = $7' end,
        case when coalesce(brand, brands::text, exclude_brands::text) is not null
            then 'exists (select from pgrecs.items b where b.item_id = e.item_id'
                 || case when brand is not null then ' and b.brand = $10' else '' end
                 || case when brands is not null then ' and b.brand = any($11)' else '' end
                 || case when exclude_brands is not null then ' and not coalesce(b.brand = any($12), false)' else '' end
                 || ')' end,
        case when exclude is not null then 'e.item_id <> all($13)' end)
$$;
comment on function pgrecs.similarity_filter_sql(boolean, text[], numeric, numeric, boolean, text, text[], text[], bigint[]) is
    'SQL text of the similarity filter predicate over pgrecs.item_embeddings e (or a relation with the same '
    'filter columns and item_id) for the filters given (non-null; in_stock only when true), parameters $2..$7 '
    'and $10..$13; internal to semantic_search.';
