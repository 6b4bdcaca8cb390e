-- Text cleaning and the composition of the text that gets embedded.
--
-- Pure functions (immutable, parallel safe) in SQL/plpgsql, so the dbt staging models and the live
-- embedding queue (a trigger, no dbt run) share one definition of "the cleaned text of an item".
--
-- clean_text(raw) does, in order:
--   1. HTML entities decoded (every HTML5 named entity, decimal and hex references);
--      (twice: catalog feeds are often escaped twice, "&amp;lt;br&amp;gt;");
--   2. HTML tags removed (also an unclosed tag at the end, and script/style bodies), then entities
--      decoded once more (entities that were inside the markup);
--   3. mojibake repaired: runs of UTF-8 bytes that were read as Windows-1252/Latin-1 ("CafÃ©",
--      "donâ€™t") are turned back into the bytes and decoded as UTF-8 (twice, for double damage);
--   4. Unicode NFKC normalisation, control and zero-width characters dropped, whitespace collapsed.
-- clean_description additionally removes boilerplate phrases; clean_label gives brands and
-- category names one casing; parse_size reads a size/quantity (16 fl oz, 250 ml, 2-pack).

-- pgrecs.html_entities() (the HTML5 named entities) is in sql/009_html_entities.sql.

create or replace function pgrecs.html_unescape(raw text)
returns text
language plpgsql
immutable parallel safe
as $$
declare
    result text := raw;
    match text[];
    replacement text;
    code bigint;
    entities jsonb;
begin
    if raw is null or strpos(raw, '&') = 0 then
        return raw;
    end if;
    for match in
        select distinct regexp_matches(raw, '&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});', 'g')
    loop
        replacement := case match[1]
            when 'amp' then '&' when 'lt' then '<' when 'gt' then '>' when 'quot' then '"'
            when 'apos' then '''' when 'nbsp' then U&'\00A0' end;
        if replacement is null and left(match[1], 1) = '#' then
            if match[1] ~ '^#[xX]' then
                code := ('x' || lpad(substr(match[1], 3), 8, '0'))::bit(32)::bigint;
            else
                code := substr(match[1], 2)::bigint;
            end if;
            replacement := case
                when code between 1 and 1114111 and code not between 55296 and 57343 then chr(code::int)
                else U&'\FFFD'
            end;
        elsif replacement is null then
            entities := coalesce(entities, pgrecs.html_entities());
            replacement := entities ->> match[1];
        end if;
        if replacement is not null then
            result := replace(result, '&' || match[1] || ';', replacement);
        end if;
    end loop;
    return result;
end
$$;
comment on function pgrecs.html_unescape(text) is
    'Decodes HTML named (HTML5 table), decimal and hex character references; unknown names are kept.';

create or replace function pgrecs.strip_html(raw text)
returns text
language sql
immutable parallel safe
as $$
    select regexp_replace(
        regexp_replace(
            regexp_replace(raw, '<(script|style)[^>]*>.*?</\1\s*>', ' ', 'gi'),
            '<!--.*?-->', ' ', 'g'),
        '<[A-Za-z/!][^<>]*(>|$)', ' ', 'g')
$$;
comment on function pgrecs.strip_html(text) is
    'Removes HTML tags, comments and script/style bodies (an unclosed tag at the end too), leaving a space.';

-- The Windows-1252 characters that stand for bytes 0x80-0x9F, in byte order (undefined bytes are
-- kept as the C1 control itself, the way Latin-1 readers produce them).
create or replace function pgrecs.fix_mojibake(raw text)
returns text
language plpgsql
immutable parallel safe
as $$
declare
    cp1252 constant text := U&'\20AC\0081\201A\0192\201E\2026\2020\2021\02C6\2030\0160\2039\0152\008D\017D\008F\0090\2018\2019\201C\201D\2022\2013\2014\02DC\2122\0161\203A\0153\009D\017E\0178';
    c1 constant text := U&'\0080\0081\0082\0083\0084\0085\0086\0087\0088\0089\008A\008B\008C\008D\008E\008F\0090\0091\0092\0093\0094\0095\0096\0097\0098\0099\009A\009B\009C\009D\009E\009F';
    -- a UTF-8 continuation byte as seen through Windows-1252 or Latin-1
    cont constant text := U&'[\0080-\00BF\20AC\201A\0192\201E\2026\2020\2021\02C6\2030\0160\2039\0152\017D\2018\2019\201C\201D\2022\2013\2014\02DC\2122\0161\203A\0153\017E\0178]';
    run_pattern text;
    result text := raw;
    run text;
    repaired text;
    pass int;
begin
    if raw is null or raw !~ U&'[\00C2-\00F4]' then
        return raw;
    end if;
    run_pattern := '(?:' || U&'[\00C2-\00DF]' || cont || '|' || U&'[\00E0-\00EF]' || cont || '{2}|'
        || U&'[\00F0-\00F4]' || cont || '{3})+';
    for pass in 1..2 loop
        for run in select distinct (regexp_matches(result, run_pattern, 'g'))[1] loop
            begin
                repaired := convert_from(convert_to(translate(run, cp1252, c1), 'LATIN1'), 'UTF8');
                result := replace(result, run, repaired);
            exception when others then
                null;  -- not valid UTF-8 once re-encoded: it was real Latin-1 text, keep it
            end;
        end loop;
        exit when result !~ U&'[\00C2-\00F4]';
    end loop;
    return result;
end
$$;
comment on function pgrecs.fix_mojibake(text) is
    'Repairs UTF-8 text that was decoded as Windows-1252 or Latin-1 (mojibake such as "CafÃ©"), run by run; other text is returned unchanged.';

create or replace function pgrecs.clean_text(raw text)
returns text
language plpgsql
immutable parallel safe
as $$
declare
    t text := raw;
begin
    -- each step only runs when its trigger character is present: most catalog text is plain
    if t is null then
        return null;
    end if;
    if strpos(t, '&') > 0 then
        t := pgrecs.html_unescape(t);
        if strpos(t, '&') > 0 then  -- escaped twice ("&amp;lt;br&amp;gt;")
            t := pgrecs.html_unescape(t);
        end if;
    end if;
    if strpos(t, '<') > 0 then
        t := pgrecs.strip_html(t);
        if strpos(t, '&') > 0 then
            t := pgrecs.html_unescape(t);
        end if;
    end if;
    if t ~ '[^\u0020-\u007E]' then
        t := pgrecs.fix_mojibake(t);
        t := regexp_replace(normalize(t, NFKC),
            U&'[\0001-\0008\000B\000C\000E-\001F\007F-\009F\200B-\200D\2060\FEFF\FFFD]', '', 'g');
        t := regexp_replace(t, '[[:space:]]+', ' ', 'g');
    elsif strpos(t, '  ') > 0 then
        t := regexp_replace(t, ' {2,}', ' ', 'g');
    end if;
    return nullif(btrim(t), '');
end
$$;
comment on function pgrecs.clean_text(text) is
    'Cleaned display text: entities decoded, HTML removed, mojibake repaired, NFKC-normalised, control characters dropped, whitespace collapsed; null when nothing is left.';

create or replace function pgrecs.boilerplate_pattern()
returns text
language sql
immutable parallel safe
as $$
    select '(^\s*(product description|description|about this item|from the (manufacturer|publisher))\s*:?\s*)'
        || '|((click|tap) here[^.!]*[.!]?)'
        || '|(\m(see|read|show) (more|less)\M[.!]?\s*$)'
        || '|(visit the [^.!]{1,40} store[.!]?)'
        || '|((100% )?satisfaction guaranteed[.!]?)'
        || '|(free shipping[^.!]*[.!]?)'
        || '|(this item is not eligible[^.!]*[.!]?)'
        || '|(currently,? item can be shipped only within the u\.?s\.?[.!]?)'
$$;
comment on function pgrecs.boilerplate_pattern() is
    'The regular expression (case-insensitive) of boilerplate phrases removed from descriptions and counted by the audit.';

create or replace function pgrecs.clean_description(raw text)
returns text
language sql
immutable parallel safe
as $$
    select nullif(btrim(regexp_replace(regexp_replace(
        coalesce(pgrecs.clean_text(raw), ''), pgrecs.boilerplate_pattern(), ' ', 'gi'),
        '\s+', ' ', 'g'), ' -|,;:'), '')
$$;
comment on function pgrecs.clean_description(text) is
    'clean_text without boilerplate phrases (see boilerplate_pattern); null when nothing is left.';

create or replace function pgrecs.clean_label(raw text)
returns text
language sql
immutable parallel safe
as $$
    -- One casing per brand or category name: ALL CAPS or all lower-case names of more than one word
    -- or longer than five letters get title case ("SHINY LEAF" -> "Shiny Leaf"), short all-caps
    -- words are taken for acronyms ("NYX", "TULA"), mixed case is kept ("iPhone", "L'Oreal").
    select case
        when t is null then null
        when t ~ '[[:alpha:]]' and (t = upper(t) or t = lower(t))
             and (t ~ ' ' or length(t) > 5 or t = lower(t))
            then initcap(t)
        else t
    end
    from (select pgrecs.clean_text(raw) as t) as cleaned
$$;
comment on function pgrecs.clean_label(text) is
    'Cleaned brand or category name with one consistent casing (see the rule in the body).';

create or replace function pgrecs.label_key(raw text)
returns text
language sql
immutable parallel safe
as $$
    select nullif(lower(regexp_replace(pgrecs.clean_text(raw), '[^[:alnum:]&]+', ' ', 'g')), ' ')
$$;
comment on function pgrecs.label_key(text) is
    'Matching key of a brand or category: cleaned, lower case, punctuation folded to spaces.';

create or replace function pgrecs.parse_size(txt text, out size_value numeric, out size_unit text)
language sql
immutable parallel safe
as $$
    -- The first size or quantity in the text, the unit normalised (fl oz, oz, ml, l, g, kg, lb, count).
    select m[1]::numeric,
        case
            when u ~ '^fl' then 'fl oz'
            when u ~ '^(oz|ounce)' then 'oz'
            when u ~ '^(ml|millilit)' then 'ml'
            when u ~ '^(l|lit)' then 'l'
            when u ~ '^(g|gram)' then 'g'
            when u ~ '^(kg|kilo)' then 'kg'
            when u ~ '^(lb|pound)' then 'lb'
            else 'count'
        end
    from (
        select m, lower(regexp_replace(m[2], '[\s.]', '', 'g')) as u
        from (
            select regexp_match(txt,
                '(\d+(?:\.\d+)?)\s*-?\s*(fl\.?\s*oz|fluid\s*ounces?|oz|ounces?|ml|millilit(?:er|re)s?|lit(?:er|re)s?|l|grams?|g|kg|kilograms?|lbs?|pounds?|count|ct|pack|pk|pcs|pieces)\M\.?',
                'i') as m
        ) as matched
        where m is not null
    ) as parsed
$$;
comment on function pgrecs.parse_size(text) is
    'First size/quantity in a text ("16 fl. Oz" -> 16, fl oz; "2-Pack" -> 2, count); nulls when none.';

create or replace function pgrecs.compose_item_text(
    title text,
    description text,
    brand text,
    category_path text[],
    attributes jsonb
)
returns text
language sql
immutable parallel safe
as $$
    -- Template: "<title>. Brand: <brand>. Category: <a > b>. <k>: <v>; <k>: <v>. <description>"
    -- Attributes: up to 8 scalar or list values of at most 80 characters, keys in alphabetical
    -- order, identifiers, codes, dimensions and links left out.
    select nullif(concat_ws('. ',
        pgrecs.clean_text(title),
        'Brand: ' || pgrecs.clean_label(brand),
        'Category: ' || nullif(array_to_string(
            array(select pgrecs.clean_label(c) from unnest(category_path) with ordinality as p(c, n) order by n),
            ' > '), ''),
        (
            select string_agg(key || ': ' || value, '; ' order by key)
            from (
                select btrim(pgrecs.clean_text(a.key), ' :') as key, pgrecs.clean_text(
                        case jsonb_typeof(a.value)
                            when 'array' then (select string_agg(e, ', ') from jsonb_array_elements_text(a.value) as e)
                            when 'object' then null
                            else a.value #>> '{}'
                        end) as value
                from jsonb_each(coalesce(attributes, '{}')) as a
                where a.key !~* '(^|[ _])(id|asin|upc|ean|isbn|sku|url|image|link|dimensions?|weight|date|rank)s?([ _:]|$)'
                order by a.key
                limit 8
            ) as kv
            where value is not null and length(value) <= 80
        ),
        pgrecs.clean_description(description)
    ), '')
$$;
comment on function pgrecs.compose_item_text(text, text, text, text[], jsonb) is
    'The text embedded for an item: "<title>. Brand: <brand>. Category: <path>. <key attributes>. <description>", each part cleaned.';

-- The junk-text rule. Length alone is no test: "FROG CANDLE", "SPACE OWL" and "BINGO SET" are
-- real products. The composed text (template labels "Brand:" and "Category:" left out) is split
-- into tokens at anything but letters, digits and apostrophes ("n/a" and "N.A." become "na"); a
-- word is a token of two or more letters and nothing else. Refused, in this order:
--   empty text           nothing to embed
--   no words             no word besides units and code labels: digits, SKU-like codes, symbols
--                        ("12345 #### 999", "85123A", "SKU-4421", "?")
--   repeated characters  every word one letter repeated ("aaaa", "xxxxx")
--   placeholder text     every word a placeholder ("test", "n/a", "sample", "tbd", "lorem ipsum")
-- Measured on the shared catalogs: benchmarks/results/text_rule.json, docs/catalog-quality.md.
create or replace function pgrecs.item_text_problem(composed text)
returns text
language sql
immutable parallel safe
as $$
    with tokens as (
        select t.token
        from regexp_split_to_table(
            regexp_replace(
                regexp_replace(lower(coalesce(composed, '')), '(^|\. )(brand|category): ', ' ', 'g'),
                '\m([[:alpha:]])[/.](?=[[:alpha:]]\M)', '\1', 'g'),
            '[^[:alnum:]'']+') as t (token)
        where t.token ~ '^[[:alpha:]'']+$'
            and length(replace(t.token, '''', '')) >= 2
            -- units and code labels are no words
            and t.token not in ('cm', 'mm', 'kg', 'ml', 'oz', 'lb', 'lbs', 'pc', 'pcs', 'pk', 'ct', 'xl', 'xxl',
                                'sku', 'id', 'ref', 'no', 'nr', 'upc', 'ean', 'asin', 'isbn', 'code')
    )
    select case
        when composed is null or btrim(composed) = '' then 'empty text'
        when not exists (select from tokens) then 'no words'
        when not exists (select from tokens where token !~ '^(.)\1+$') then 'repeated characters'
        when not exists (
            select from tokens
            where token !~ '^(.)\1+$'
                and token not in ('test', 'testing', 'tester', 'sample', 'samples', 'na', 'none', 'null', 'nil',
                                  'tbd', 'tba', 'todo', 'dummy', 'placeholder', 'untitled', 'unnamed', 'unknown',
                                  'default', 'example', 'misc', 'item', 'product', 'asdf', 'qwerty', 'foo', 'bar',
                                  'lorem', 'ipsum', 'dolor', 'sit', 'amet', 'title', 'description', 'new', 'tmp',
                                  'temp')
        ) then 'placeholder text'
    end
$$;
comment on function pgrecs.item_text_problem(text) is
    'Why a composed item text is junk, never embedded: empty text, no words (digits, codes, symbols only), repeated characters, placeholder text; null when it is fine, however short.';

create or replace function pgrecs.item_embed_problem(composed text, embed_override boolean)
returns text
language sql
immutable parallel safe
as $$
    -- the merchant's decision (pgrecs.items.embed_override) beats the rule; empty text cannot be embedded
    select case
        when composed is null or btrim(composed) = '' then 'empty text'
        when embed_override then null
        when not embed_override then 'refused by the merchant'
        else pgrecs.item_text_problem(composed)
    end
$$;
comment on function pgrecs.item_embed_problem(text, boolean) is
    'Why an item is not embedded: the merchant''s override (true: embed, false: refused by the merchant) or else the junk-text rule (pgrecs.item_text_problem); null: embed.';
