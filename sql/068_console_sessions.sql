-- Merchant console sessions (pgrecs.console_sessions, migration 0019): SECURITY DEFINER, like
-- pgrecs.api_key_lookup, because the API role can read neither the keys nor the sessions and
-- does not know the tenant before the session is found. Only sha256 hashes cross the boundary.

create or replace function pgrecs.console_session_start(key_sha256 bytea, token_sha256 bytea, idle interval)
returns table (key_id bigint, tenant_id text, key_name text, scopes text[], session_id bigint)
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
set "pgrecs.tenant" = ''
as $$
    -- the active key with this hash; a session only when it holds the merchant or admin scope
    with key as (
        select k.key_id, k.tenant_id, k.name, k.scopes
        from pgrecs.api_keys as k
        where k.key_sha256 = $1
          and k.revoked_at is null
    ),
    -- the key's ended and idle-expired sessions leave, so the table holds live sessions only
    expired as (
        delete from pgrecs.console_sessions as s
        using key
        where s.key_id = key.key_id
          and (s.ended_at is not null or s.last_seen_at < pg_catalog.now() - $3)
    ),
    started as (
        insert into pgrecs.console_sessions (tenant_id, key_id, token_sha256)
        select key.tenant_id, key.key_id, $2
        from key
        where key.scopes && array['merchant', 'admin']
        returning console_sessions.session_id, console_sessions.key_id
    )
    select key.key_id, key.tenant_id, key.name, key.scopes, started.session_id
    from key
    left join started on started.key_id = key.key_id
$$;
comment on function pgrecs.console_session_start(bytea, bytea, interval) is
    'Console login: for the active API key with this sha256, its id, tenant, name and scopes, and a new session (token sha256) when it holds the merchant or admin scope (session_id null otherwise); no row for an unknown or revoked key.';

create or replace function pgrecs.console_session_touch(token_sha256 bytea, idle interval)
returns table (key_id bigint, tenant_id text, key_name text, scopes text[], session_id bigint)
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
set "pgrecs.tenant" = ''
as $$
    with live as (
        select s.session_id, s.last_seen_at, k.key_id, k.tenant_id, k.name, k.scopes
        from pgrecs.console_sessions as s
        join pgrecs.api_keys as k on k.key_id = s.key_id
        where s.token_sha256 = $1
          and s.ended_at is null
          and s.last_seen_at > pg_catalog.now() - $2
          and k.revoked_at is null
          and k.scopes && array['merchant', 'admin']
    ),
    -- last seen, written at most every tenth of the idle time (a page view is not a write each time)
    touched as (
        update pgrecs.console_sessions as s
        set last_seen_at = pg_catalog.now()
        from live
        where s.session_id = live.session_id
          and live.last_seen_at < pg_catalog.now() - $2 / 10
    )
    select live.key_id, live.tenant_id, live.name, live.scopes, live.session_id
    from live
$$;
comment on function pgrecs.console_session_touch(bytea, interval) is
    'The live console session with this token sha256 (not ended, seen within the idle time, its key active and still merchant or admin): key id, tenant, key name, scopes; records it as seen. No row otherwise.';

create or replace function pgrecs.console_session_end(token_sha256 bytea)
returns boolean
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
set "pgrecs.tenant" = ''
as $$
    with ended as (
        update pgrecs.console_sessions as s
        set ended_at = pg_catalog.now()
        where s.token_sha256 = $1
          and s.ended_at is null
        returning 1
    )
    select exists (select 1 from ended)
$$;
comment on function pgrecs.console_session_end(bytea) is
    'Console logout: ends the session with this token sha256 (true when one was live).';

revoke all on function pgrecs.console_session_start(bytea, bytea, interval) from public;
revoke all on function pgrecs.console_session_touch(bytea, interval) from public;
revoke all on function pgrecs.console_session_end(bytea) from public;
grant execute on function pgrecs.console_session_start(bytea, bytea, interval) to pgrecs_api;
grant execute on function pgrecs.console_session_touch(bytea, interval) to pgrecs_api;
grant execute on function pgrecs.console_session_end(bytea) to pgrecs_api;
