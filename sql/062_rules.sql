-- Business rules as an API: list, create, edit, enable and disable boosts, pins, blocks and
-- campaigns (any rule with a time window), with an audit trail of every change.
--
-- The table pgrecs.business_rules and the trail pgrecs.business_rule_changes come from
-- migrations (0004, 0019). The trigger below records every insert, update and delete, whoever
-- makes it (console, CLI, plain SQL); the actor is the GUC pgrecs.actor when the caller set it
-- (the console sets its key's name), else the database user.

create or replace function pgrecs.audit_business_rule_change()
returns trigger
language plpgsql
-- the API role may not write the trail itself (sql/070_security.sql), only through this trigger
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    insert into pgrecs.business_rule_changes (tenant_id, rule_id, action, actor, old_row, new_row)
    values (
        coalesce(new.tenant_id, old.tenant_id),
        coalesce(new.rule_id, old.rule_id),
        lower(tg_op),
        coalesce(nullif(current_setting('pgrecs.actor', true), ''), session_user::text),
        case when tg_op <> 'INSERT' then to_jsonb(old) end,
        case when tg_op <> 'DELETE' then to_jsonb(new) end
    );
    return null;
end
$$;
comment on function pgrecs.audit_business_rule_change() is
    'Trigger: one pgrecs.business_rule_changes row per changed rule (action, actor from pgrecs.actor or the database user, old and new row).';

create or replace trigger business_rules_audit
after insert or update or delete on pgrecs.business_rules
for each row execute function pgrecs.audit_business_rule_change();

create or replace function pgrecs.rule_status(r pgrecs.business_rules, at timestamptz)
returns text
language sql
immutable parallel safe
as $$
    select case
        when not r.enabled then 'disabled'
        when r.starts_at is not null and at < r.starts_at then 'scheduled'
        when r.ends_at is not null and at >= r.ends_at then 'ended'
        else 'live'
    end
$$;
comment on function pgrecs.rule_status(pgrecs.business_rules, timestamptz) is
    'A rule''s state at a time: disabled, scheduled (before its window), ended (after it) or live (what rank_items applies).';

create or replace function pgrecs.live_rules(tenant text, placement_name text)
returns table (rule_id bigint, name text, kind text, factor real, item_id bigint, brand text, category text,
               min_margin numeric, "position" integer)
language sql
stable parallel safe
as $$
    -- inlined into the statements that read it (language sql, stable, no set clause), so their
    -- plans stay those of the plain table scan
    select br.rule_id, br.name, br.kind, br.factor, br.item_id, br.brand, br.category, br.min_margin, br.position
    from pgrecs.business_rules br
    where br.tenant_id = tenant
      and br.enabled
      and (br.placement is null or br.placement = placement_name)
      and (br.starts_at is null or br.starts_at <= now())
      and (br.ends_at is null or now() < br.ends_at)
$$;
comment on function pgrecs.live_rules(text, text) is
    'The rules a placement applies now (enabled, within their time window, for this placement or every one): boosts, blocks and pins with their match columns. Every ranking read of business rules goes through it.';

create or replace function pgrecs.business_rules()
returns table (rule_id bigint, name text, kind text, placement text, item_id bigint, item_external_id text,
               item_title text, brand text, category text, min_margin numeric, factor real, "position" integer,
               starts_at timestamptz, ends_at timestamptz, enabled boolean, status text, created_at timestamptz,
               changed_at timestamptz, changed_by text)
language sql
stable parallel safe
as $$
    select r.rule_id, r.name, r.kind, r.placement, r.item_id, i.external_id, i.title, r.brand, r.category,
           r.min_margin, r.factor, r.position, r.starts_at, r.ends_at, r.enabled, pgrecs.rule_status(r, now()),
           r.created_at, last.changed_at, last.actor
    from pgrecs.business_rules r
    left join pgrecs.items i on i.item_id = r.item_id
    left join lateral (
        select c.changed_at, c.actor
        from pgrecs.business_rule_changes c
        where c.tenant_id = r.tenant_id and c.rule_id = r.rule_id
        order by c.changed_at desc, c.change_id desc
        limit 1
    ) last on true
    where r.tenant_id = pgrecs.current_tenant()
    order by pgrecs.rule_status(r, now()) = 'live' desc, r.kind, r.rule_id
$$;
comment on function pgrecs.business_rules() is
    'The body of recs.business_rules (the public function, documented there).';

create or replace function pgrecs.check_rule(r pgrecs.business_rules)
returns pgrecs.business_rules
language plpgsql
stable parallel safe
as $$
begin
    if r.kind is null or r.kind not in ('boost', 'pin', 'block') then
        raise exception 'kind must be boost, pin or block (got %)', coalesce(r.kind, 'nothing') using errcode = '22023';
    end if;
    if coalesce(btrim(r.name), '') = '' or length(r.name) > 200 then
        raise exception 'a rule needs a name of at most 200 characters' using errcode = '22023';
    end if;
    if r.kind = 'boost' and (r.factor is null or r.factor <= 0) then
        raise exception 'a boost needs a factor above 0 (above 1 boosts, below 1 demotes)' using errcode = '22023';
    end if;
    if r.kind = 'pin' and (r.item_id is null or r.position is null or r.position < 1 or r.position > 100) then
        raise exception 'a pin needs an item and a position from 1 to 100' using errcode = '22023';
    end if;
    if r.item_id is null and r.brand is null and r.category is null and r.min_margin is null then
        raise exception 'a rule must match something: an item, a brand, a category or a minimum margin' using errcode = '22023';
    end if;
    if r.starts_at is not null and r.ends_at is not null and r.starts_at >= r.ends_at then
        raise exception 'the window must start before it ends' using errcode = '22023';
    end if;
    if r.placement is not null and not exists (
        select 1 from pgrecs.placements p where p.tenant_id = r.tenant_id and p.placement = r.placement) then
        raise exception 'unknown placement: %', r.placement using errcode = 'P0002';
    end if;
    if r.kind <> 'boost' then
        r.factor := null;
    end if;
    if r.kind <> 'pin' then
        r.position := null;
    end if;
    return r;
end
$$;
comment on function pgrecs.check_rule(pgrecs.business_rules) is
    'Validates a business rule row with one-line messages (22023, P0002 for an unknown placement) and clears the fields its kind does not use.';

create or replace function pgrecs.rule_row(
    rule_id bigint, name text, kind text, placement text, item text, brand text, category text, min_margin numeric,
    factor real, pin_position integer, starts_at timestamptz, ends_at timestamptz, enabled boolean
)
returns pgrecs.business_rules
language plpgsql
stable parallel safe
as $$
declare
    r pgrecs.business_rules;
begin
    r.rule_id := rule_row.rule_id;
    r.tenant_id := pgrecs.current_tenant();
    r.name := btrim(rule_row.name);
    r.kind := rule_row.kind;
    r.placement := nullif(btrim(rule_row.placement), '');
    if nullif(btrim(rule_row.item), '') is not null then
        select i.item_id into r.item_id from pgrecs.items i
        where i.tenant_id = r.tenant_id and i.external_id = btrim(rule_row.item);
        if r.item_id is null then
            raise exception 'unknown item: %', rule_row.item using errcode = 'P0002';
        end if;
    end if;
    r.brand := nullif(btrim(rule_row.brand), '');
    r.category := nullif(btrim(rule_row.category), '');
    r.min_margin := rule_row.min_margin;
    r.factor := rule_row.factor;
    r.position := rule_row.pin_position;
    r.starts_at := rule_row.starts_at;
    r.ends_at := rule_row.ends_at;
    r.enabled := coalesce(rule_row.enabled, true);
    return pgrecs.check_rule(r);
end
$$;
comment on function pgrecs.rule_row(bigint, text, text, text, text, text, text, numeric, real, integer, timestamptz, timestamptz, boolean) is
    'A checked pgrecs.business_rules row from the arguments of recs.create_rule / recs.update_rule (item by external id, blanks as null).';

create or replace function pgrecs.create_rule(
    name text,
    kind text,
    placement text default null,
    item text default null,
    brand text default null,
    category text default null,
    min_margin numeric default null,
    factor real default null,
    pin_position integer default null,
    starts_at timestamptz default null,
    ends_at timestamptz default null,
    enabled boolean default true
)
returns bigint
language plpgsql
volatile
as $$
declare
    r pgrecs.business_rules;
    new_id bigint;
begin
    r := pgrecs.rule_row(null, name, kind, placement, item, brand, category, min_margin, factor, pin_position,
                         starts_at, ends_at, enabled);
    insert into pgrecs.business_rules (tenant_id, name, kind, placement, item_id, brand, category, min_margin,
                                       factor, position, starts_at, ends_at, enabled)
    values (r.tenant_id, r.name, r.kind, r.placement, r.item_id, r.brand, r.category, r.min_margin,
            r.factor, r.position, r.starts_at, r.ends_at, r.enabled)
    returning business_rules.rule_id into new_id;
    return new_id;
end
$$;
comment on function pgrecs.create_rule(text, text, text, text, text, text, numeric, real, integer, timestamptz, timestamptz, boolean) is
    'The body of recs.create_rule (the public function, documented there).';

create or replace function pgrecs.update_rule(
    rule_id bigint,
    name text,
    kind text,
    placement text default null,
    item text default null,
    brand text default null,
    category text default null,
    min_margin numeric default null,
    factor real default null,
    pin_position integer default null,
    starts_at timestamptz default null,
    ends_at timestamptz default null,
    enabled boolean default true
)
returns bigint
language plpgsql
volatile
as $$
declare
    r pgrecs.business_rules;
begin
    r := pgrecs.rule_row(rule_id, name, kind, placement, item, brand, category, min_margin, factor, pin_position,
                         starts_at, ends_at, enabled);
    update pgrecs.business_rules b
    set name = r.name, kind = r.kind, placement = r.placement, item_id = r.item_id, brand = r.brand,
        category = r.category, min_margin = r.min_margin, factor = r.factor, position = r.position,
        starts_at = r.starts_at, ends_at = r.ends_at, enabled = r.enabled
    where b.tenant_id = r.tenant_id and b.rule_id = update_rule.rule_id;
    if not found then
        raise exception 'unknown rule: %', rule_id using errcode = 'P0002';
    end if;
    return rule_id;
end
$$;
comment on function pgrecs.update_rule(bigint, text, text, text, text, text, text, numeric, real, integer, timestamptz, timestamptz, boolean) is
    'The body of recs.update_rule (the public function, documented there).';

create or replace function pgrecs.set_rule_enabled(rule_id bigint, enabled boolean)
returns boolean
language plpgsql
volatile
as $$
begin
    update pgrecs.business_rules b
    set enabled = set_rule_enabled.enabled
    where b.tenant_id = pgrecs.current_tenant()
      and b.rule_id = set_rule_enabled.rule_id
      and b.enabled is distinct from set_rule_enabled.enabled;
    if found then
        return true;
    end if;
    if not exists (select 1 from pgrecs.business_rules b
                   where b.tenant_id = pgrecs.current_tenant() and b.rule_id = set_rule_enabled.rule_id) then
        raise exception 'unknown rule: %', rule_id using errcode = 'P0002';
    end if;
    return false;
end
$$;
comment on function pgrecs.set_rule_enabled(bigint, boolean) is
    'The body of recs.set_rule_enabled (the public function, documented there).';

create or replace function pgrecs.business_rule_changes(rule_id bigint default null, n integer default 100)
returns table (change_id bigint, rule_id bigint, action text, actor text, changed_at timestamptz,
               old_row jsonb, new_row jsonb, changed_fields text[])
language sql
stable parallel safe
as $$
    select c.change_id, c.rule_id, c.action, c.actor, c.changed_at, c.old_row, c.new_row,
           array(
               select key
               from jsonb_each(coalesce(c.new_row, '{}'::jsonb) || coalesce(c.old_row, '{}'::jsonb)) as e (key, value)
               where key not in ('tenant_id', 'created_at')
                 and coalesce(c.old_row -> key, 'null') is distinct from coalesce(c.new_row -> key, 'null')
               order by key
           )
    from pgrecs.business_rule_changes c
    where c.tenant_id = pgrecs.current_tenant()
      and (business_rule_changes.rule_id is null or c.rule_id = business_rule_changes.rule_id)
    order by c.changed_at desc, c.change_id desc
    limit business_rule_changes.n
$$;
comment on function pgrecs.business_rule_changes(bigint, integer) is
    'The body of recs.business_rule_changes (the public function, documented there).';

create or replace function pgrecs.rule_preview_contexts(
    item text default null,
    brand text default null,
    category text default null,
    n integer default 3
)
returns table (context_kind text, external_id text, title text)
language sql
stable parallel safe
as $$
    -- contexts whose lists a rule on these match columns can change: the items that have a
    -- matching item high in a neighbour list, and the users whose history holds such an item;
    -- the most popular items and most active users when nothing matches
    with matching as (
        select i.item_id
        from pgrecs.items i
        where i.tenant_id = pgrecs.current_tenant()
          and (nullif(rule_preview_contexts.item, '') is not null or nullif(rule_preview_contexts.brand, '') is not null
               or nullif(rule_preview_contexts.category, '') is not null)
          and (nullif(rule_preview_contexts.item, '') is null or i.external_id = rule_preview_contexts.item)
          and (nullif(rule_preview_contexts.brand, '') is null or i.brand = rule_preview_contexts.brand)
          and (nullif(rule_preview_contexts.category, '') is null or rule_preview_contexts.category = any(i.category_path))
        limit 1000
    ),
    anchor_items as (
        select nb.item_id, max(nb.score) as score
        from pgrecs.item_neighbors nb
        join matching m on m.item_id = nb.neighbor_item_id
        where nb.tenant_id = pgrecs.current_tenant() and nb.rank <= 10
        group by nb.item_id
        order by max(nb.score) desc, nb.item_id
        limit rule_preview_contexts.n
    ),
    item_contexts as (
        select a.item_id, 1 as grp, a.score as o from anchor_items a
        union all
        select s.item_id, 2, s.popularity from (
            select s.item_id, s.popularity from pgrecs.item_signals s
            where s.tenant_id = pgrecs.current_tenant()
            order by s.popularity desc, s.item_id
            limit rule_preview_contexts.n
        ) s
    ),
    user_contexts as (
        select u.user_id, min(u.grp) as grp, max(u.o) as o
        from (
            select e.user_id, 1 as grp, count(*)::float8 as o
            from pgrecs.events e
            join anchor_items a on a.item_id = e.item_id
            where e.tenant_id = pgrecs.current_tenant()
            group by e.user_id
            union all
            select e.user_id, 2, count(*)::float8
            from (select ev.user_id from pgrecs.events ev
                  where ev.tenant_id = pgrecs.current_tenant()
                  order by ev.occurred_at desc
                  limit 5000) e
            group by e.user_id
        ) u
        group by u.user_id
    )
    (select 'item', i.external_id, i.title
     from (select ic.item_id, min(ic.grp) as grp, max(ic.o) as o from item_contexts ic group by ic.item_id) c
     join pgrecs.items i on i.item_id = c.item_id
     order by c.grp, c.o desc, i.item_id
     limit rule_preview_contexts.n)
    union all
    (select 'user', u.external_id, null
     from user_contexts c
     join pgrecs.users u on u.user_id = c.user_id
     order by c.grp, c.o desc, u.user_id
     limit rule_preview_contexts.n)
$$;
comment on function pgrecs.rule_preview_contexts(text, text, text, integer) is
    'The body of recs.rule_preview_contexts (the public function, documented there).';
