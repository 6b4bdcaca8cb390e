-- 020_ingest.sql: helpers the loader (app/ingest) uses to validate and merge staged rows.
-- Idempotent: create or replace, re-applied on every migrate. All are plain language sql
-- expressions without SET clauses, so the planner inlines them into the set-based statements.

create or replace function pgrecs.ingest_time(raw text)
returns timestamptz
language sql
stable
parallel safe
as $$
    select case
        when raw is null or btrim(raw) = '' then null
        -- unix epoch: seconds, or milliseconds when the magnitude says so (>= 1e11)
        when btrim(raw) ~ '^-?[0-9]{1,15}(\.[0-9]+)?$' then
            case
                when abs(btrim(raw)::numeric) >= 100000000000 then to_timestamp(btrim(raw)::float8 / 1000)
                else to_timestamp(btrim(raw)::float8)
            end
        -- ISO 8601 (date first); a time without zone is read in the session time zone (UTC while loading)
        when btrim(raw) ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}' and pg_input_is_valid(btrim(raw), 'timestamptz')
            then btrim(raw)::timestamptz
    end
$$;
comment on function pgrecs.ingest_time(text) is
    'Event time from loader text: ISO 8601 (YYYY-MM-DD first) or unix epoch seconds / milliseconds (>= 1e11 means ms); null when unparseable.';

create or replace function pgrecs.ingest_category_path(raw text)
returns text[]
language sql
immutable
parallel safe
as $$
    select case
        when raw is null or btrim(raw) = '' then '{}'::text[]
        when left(btrim(raw), 1) = '[' then array(
            select btrim(e.part)
            from jsonb_array_elements_text(raw::jsonb) with ordinality as e (part, n)
            where btrim(e.part) <> ''
            order by e.n
        )
        else array(
            select btrim(p.part)
            from regexp_split_to_table(raw, ' > |\|') with ordinality as p (part, n)
            where btrim(p.part) <> ''
            order by p.n
        )
    end
$$;
comment on function pgrecs.ingest_category_path(text) is
    'Category path from loader text: a JSON list of strings, or a string split on '' > '' or ''|''; empty parts dropped.';

create or replace function pgrecs.ingest_category_path_ok(raw text)
returns boolean
language sql
immutable
parallel safe
as $$
    select case
        when raw is null or left(btrim(raw), 1) <> '[' then true
        when not pg_input_is_valid(raw, 'jsonb') then false
        when jsonb_typeof(raw::jsonb) <> 'array' then false
        else not jsonb_path_exists(raw::jsonb, '$[*] ? (@.type() != "string")')
    end
$$;
comment on function pgrecs.ingest_category_path_ok(text) is
    'Whether loader text is an acceptable category path: not JSON-looking, or a JSON list of strings.';

create or replace function pgrecs.ingest_event_key(
    user_id text,
    item_id text,
    event_type text,
    occurred_at timestamptz,
    value double precision,
    session_id text,
    event_id text
)
returns uuid
language sql
stable  -- extract(epoch from timestamptz) and float8 output are stable in PostgreSQL
parallel safe
as $$
    select case
        when nullif(btrim(event_id), '') is not null then md5('event_id' || chr(31) || btrim(event_id))::uuid
        else md5(concat_ws(
            chr(31),
            user_id,
            item_id,
            event_type,
            extract(epoch from occurred_at)::text,
            coalesce(value::text, ''),
            coalesce(session_id, '')
        ))::uuid
    end
$$;
comment on function pgrecs.ingest_event_key(text, text, text, timestamptz, double precision, text, text) is
    'Dedup key of an event: md5 of the source''s own event_id when given, else of user, item, type, time, value and session.';

-- Prices as catalogs write them: "25.00", "$25.00", "1,299.00", "1.299,00 EUR", "£5", "$10.00 - $500.00".
-- The loader calls this only for text that is not already a plain number, and only once per row
-- (it rewrites the staged price in place), so plain prices never pay for it. PL/pgSQL: its IF
-- chain tests a few anchored patterns in order, and a cast runs only after its pattern matched.
create or replace function pgrecs.ingest_price_parts(raw text, out amount numeric, out currency text)
language plpgsql
immutable
parallel safe
as $$
declare
    symbols constant text := '(?:US|CA|C|AU|A|NZ|HK|S|R)\$|CN¥|JP¥|[$£€¥₹₩₽₺₪₫฿]';
    t text := btrim(raw);
    mark text;
    number text;
    amounts numeric[] := '{}';
    value numeric;
begin
    if t is null or t = '' then
        return;
    end if;
    if pg_input_is_valid(t, 'numeric') then
        amount := t::numeric;
        return;
    end if;
    -- [code] [symbol] amount [code | symbol], optionally "- another" (a range)
    if t !~ ('^([A-Z]{3} ?)?(' || symbols || ')? ?[0-9][0-9.,'' ]* ?([A-Z]{3}|' || symbols || ')?'
             '( ?(-|–|—|to) ?([A-Z]{3} ?)?(' || symbols || ')? ?[0-9][0-9.,'' ]* ?([A-Z]{3}|' || symbols || ')?)?$') then
        return;
    end if;
    mark := coalesce(substring(t from '[A-Z]{3}'), substring(t from symbols));
    currency := case
        when mark ~ '^[A-Z]{3}$' then mark
        when mark in ('$', 'US$') then 'USD' when mark in ('CA$', 'C$') then 'CAD'
        when mark in ('AU$', 'A$') then 'AUD' when mark = 'NZ$' then 'NZD' when mark = 'HK$' then 'HKD'
        when mark = 'S$' then 'SGD' when mark = 'R$' then 'BRL' when mark = '£' then 'GBP'
        when mark = '€' then 'EUR' when mark in ('¥', 'JP¥') then 'JPY' when mark = 'CN¥' then 'CNY'
        when mark = '₹' then 'INR' when mark = '₩' then 'KRW' when mark = '₽' then 'RUB'
        when mark = '₺' then 'TRY' when mark = '₪' then 'ILS' when mark = '₫' then 'VND' when mark = '฿' then 'THB'
    end;
    -- each amount (one, or the two ends of a range), thousands separators and decimal comma read
    loop
        number := substring(t from '[0-9][0-9.,'' ]*[0-9]|[0-9]');
        exit when number is null;
        t := substr(t, strpos(t, number) + length(number));
        value := case
            when number ~ '^[0-9]+(\.[0-9]+)?$' then number::numeric
            when number ~ '^[0-9]{1,3}(,[0-9]{3})+(\.[0-9]+)?$' then replace(number, ',', '')::numeric
            when number ~ '^[0-9]{1,3}(\.[0-9]{3})+(,[0-9]+)?$' then replace(replace(number, '.', ''), ',', '.')::numeric
            when number ~ '^[0-9]{1,3}([ ''][0-9]{3})+([.,][0-9]+)?$'
                then replace(translate(number, ' ''', ''), ',', '.')::numeric
            when number ~ '^[0-9]+,[0-9]{1,2}$' then replace(number, ',', '.')::numeric
        end;
        if value is null then
            amount := null;
            currency := null;
            return;
        end if;
        amount := least(amount, value);  -- a range keeps its lower bound: the "from" price a shop shows
    end loop;
end
$$;
comment on function pgrecs.ingest_price_parts(text, out numeric, out text) is
    'Amount and ISO currency of a price written with a currency symbol or code ("$" USD, "£" GBP, "€" EUR, "EUR 12,50"), thousands separators ("1,299.00", "1.299,00", "1 299,50") or as a range (its lower bound); nulls when the text is not a price.';

create or replace function pgrecs.ingest_image_url(raw text)
returns text
language sql
immutable
parallel safe
as $$
    -- an absolute http(s) URL; a protocol-relative one ("//cdn...") is read as https
    select case
        when btrim(raw) ~* '^https?://[^\s/?#]+[^\s]*$' then btrim(raw)
        when btrim(raw) ~ '^//[^\s/?#]+[^\s]*$' then 'https:' || btrim(raw)
    end
$$;
comment on function pgrecs.ingest_image_url(text) is
    'Image URL from loader text: an absolute http(s) URL (protocol-relative read as https); null otherwise.';
