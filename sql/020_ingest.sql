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
