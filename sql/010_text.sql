-- Text cleaning and the composition of the text that gets embedded.
-- Pure functions (immutable, parallel safe): dbt staging models and the embedding queue both call
-- them, so there is one definition of "the cleaned text of an item".

create or replace function pgrecs.clean_text(raw text)
returns text
language sql
immutable parallel safe
as $$
    select nullif(
        btrim(regexp_replace(
            normalize(
                replace(replace(replace(replace(replace(replace(
                    regexp_replace(coalesce(raw, ''), '<[^>]*>', ' ', 'g'),
                    '&nbsp;', ' '), '&amp;', '&'), '&quot;', '"'), '&#39;', ''''), '&lt;', '<'), '&gt;', '>'),
                NFKC),
            '\s+', ' ', 'g')),
        '')
$$;
comment on function pgrecs.clean_text(text) is
    'Cleaned display text: HTML tags and common entities removed, NFKC-normalised, whitespace collapsed; null when nothing is left.';

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
    select nullif(concat_ws('. ',
        pgrecs.clean_text(title),
        case when pgrecs.clean_text(brand) is not null then 'Brand: ' || pgrecs.clean_text(brand) end,
        case when cardinality(category_path) > 0
             then 'Category: ' || array_to_string(category_path, ' > ') end,
        pgrecs.clean_text(description)
    ), '')
$$;
comment on function pgrecs.compose_item_text(text, text, text, text[], jsonb) is
    'The text embedded for an item: title. Brand. Category path. Description (each cleaned).';

create or replace function pgrecs.item_text_problem(composed text)
returns text
language sql
immutable parallel safe
as $$
    select case
        when composed is null then 'empty text'
        when length(composed) < 12 then 'text too short'
        when length(regexp_replace(composed, '[^[:alpha:]]', '', 'g')) < 0.5 * length(composed)
            then 'mostly non-letters'
    end
$$;
comment on function pgrecs.item_text_problem(text) is
    'Why a composed item text is too poor to embed (null when it is fine).';
